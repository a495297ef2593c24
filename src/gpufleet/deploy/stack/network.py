"""The network: a VPC with two public and two private subnets in two zones, or the given ones.

Private subnets hold everything that runs (workers, the trigger, API containers, RDS,
ElastiCache); public ones only the load balancer and the NAT gateway. S3 is reached
through a gateway endpoint (free, and the bulk of the bytes); SQS through an interface
endpoint, so the workers' receive/heartbeat/ack traffic never crosses the NAT gateway.
Everything else (Auto Scaling, EC2, ECR, CloudWatch, Secrets Manager) goes through one
NAT gateway: interface endpoints for each would cost more than the little traffic.
"""

from __future__ import annotations

from typing import Any

from troposphere import Cidr, GetAtt, GetAZs, If, Ref, Select, Sub, Template, ec2

from gpufleet.deploy.stack.names import ENDPOINT_SG
from gpufleet.deploy.stack.parts import make

_ZONES = ("A", "B")


def vpc_id() -> Any:
    return If("MakeVpc", Ref("Vpc"), Ref("VpcId"))


def private_subnets() -> Any:
    return If("MakeVpc", [Ref(f"PrivateSubnet{z}") for z in _ZONES], Ref("PrivateSubnetIds"))


def public_subnets() -> Any:
    return If("MakeVpc", [Ref(f"PublicSubnet{z}") for z in _ZONES], Ref("PublicSubnetIds"))


def _made(cls: Any, name: str, props: dict[str, Any], **attrs: Any) -> Any:
    resource = make(cls, name, props)
    resource.Condition = "MakeVpc"
    for key, value in attrs.items():
        setattr(resource, key, value)
    return resource


def add_network(t: Template) -> None:
    tags = [{"Key": "Name", "Value": Sub("${AWS::StackName}")}]
    t.add_resource(_made(ec2.VPC, "Vpc", {"CidrBlock": Ref("VpcCidr"), "EnableDnsHostnames": True,
                                          "EnableDnsSupport": True, "Tags": tags}))
    t.add_resource(_made(ec2.InternetGateway, "InternetGateway", {"Tags": tags}))
    t.add_resource(_made(ec2.VPCGatewayAttachment, "GatewayAttachment", {
        "VpcId": Ref("Vpc"), "InternetGatewayId": Ref("InternetGateway")}))
    # Four /20s of the VPC's range: public A, public B, private A, private B.
    blocks = Cidr(Ref("VpcCidr"), 4, 12)
    for n, zone in enumerate(_ZONES):
        az = Select(n, GetAZs(""))
        t.add_resource(_made(ec2.Subnet, f"PublicSubnet{zone}", {
            "VpcId": Ref("Vpc"), "CidrBlock": Select(n, blocks), "AvailabilityZone": az,
            "Tags": [{"Key": "Name", "Value": Sub(f"${{AWS::StackName}}-public-{zone}")}]}))
        t.add_resource(_made(ec2.Subnet, f"PrivateSubnet{zone}", {
            "VpcId": Ref("Vpc"), "CidrBlock": Select(n + 2, blocks), "AvailabilityZone": az,
            "Tags": [{"Key": "Name", "Value": Sub(f"${{AWS::StackName}}-private-{zone}")}]}))
    t.add_resource(_made(ec2.RouteTable, "PublicRoutes", {"VpcId": Ref("Vpc"), "Tags": tags}))
    t.add_resource(_made(ec2.Route, "PublicDefaultRoute", {
        "RouteTableId": Ref("PublicRoutes"), "DestinationCidrBlock": "0.0.0.0/0",
        "GatewayId": Ref("InternetGateway")}, DependsOn="GatewayAttachment"))
    t.add_resource(_made(ec2.EIP, "NatAddress", {"Domain": "vpc"},
                         DependsOn="GatewayAttachment"))
    t.add_resource(_made(ec2.NatGateway, "NatGateway", {
        "AllocationId": GetAtt("NatAddress", "AllocationId"), "SubnetId": Ref("PublicSubnetA"),
        "Tags": tags}))
    t.add_resource(_made(ec2.RouteTable, "PrivateRoutes", {"VpcId": Ref("Vpc"), "Tags": tags}))
    t.add_resource(_made(ec2.Route, "PrivateDefaultRoute", {
        "RouteTableId": Ref("PrivateRoutes"), "DestinationCidrBlock": "0.0.0.0/0",
        "NatGatewayId": Ref("NatGateway")}))
    for zone in _ZONES:
        t.add_resource(_made(ec2.SubnetRouteTableAssociation, f"PublicSubnet{zone}Routes", {
            "SubnetId": Ref(f"PublicSubnet{zone}"), "RouteTableId": Ref("PublicRoutes")}))
        t.add_resource(_made(ec2.SubnetRouteTableAssociation, f"PrivateSubnet{zone}Routes", {
            "SubnetId": Ref(f"PrivateSubnet{zone}"), "RouteTableId": Ref("PrivateRoutes")}))
    t.add_resource(_made(ec2.VPCEndpoint, "S3Endpoint", {
        "VpcId": Ref("Vpc"), "VpcEndpointType": "Gateway",
        "ServiceName": Sub("com.amazonaws.${AWS::Region}.s3"),
        "RouteTableIds": [Ref("PrivateRoutes")]}))
    t.add_resource(_made(ec2.SecurityGroup, ENDPOINT_SG, {
        "GroupDescription": "HTTPS to the SQS endpoint from within the VPC",
        "VpcId": Ref("Vpc"),
        "SecurityGroupIngress": [{"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
                                  "CidrIp": Ref("VpcCidr")}]}))
    t.add_resource(_made(ec2.VPCEndpoint, "SqsEndpoint", {
        "VpcId": Ref("Vpc"), "VpcEndpointType": "Interface", "PrivateDnsEnabled": True,
        "ServiceName": Sub("com.amazonaws.${AWS::Region}.sqs"),
        "SubnetIds": [Ref(f"PrivateSubnet{z}") for z in _ZONES],
        "SecurityGroupIds": [Ref(ENDPOINT_SG)]}))
