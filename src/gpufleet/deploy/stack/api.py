"""The API: ``gpufleet api`` on ECS Fargate behind an Application Load Balancer.

Containers run in the private subnets and the load balancer in the public ones. With a
certificate the balancer serves HTTPS (TLS 1.2 or later) and redirects HTTP to it;
without one it serves HTTP. The API believes X-Forwarded-For only from the VPC's range
(the balancer), so ApiAllow and ApiDeny filter the real client. Each container first
runs ``gpufleet init`` (index migrations under an advisory lock: safe on every start),
then serves.
"""

from __future__ import annotations

from typing import Any

from troposphere import GetAtt, If, NoValue, Ref, Sub, Template, ecs
from troposphere import elasticloadbalancingv2 as elb

from gpufleet.deploy.stack.environment import cache_url, common
from gpufleet.deploy.stack.firewall import API_PORT
from gpufleet.deploy.stack.names import (
    ALB_SG,
    API_EXECUTION_ROLE,
    API_ROLE,
    API_SG,
    DB_SECRET,
    Names,
)
from gpufleet.deploy.stack.network import private_subnets, public_subnets, vpc_id
from gpufleet.deploy.stack.parts import make


def _password(secret: Any) -> list[dict[str, Any]]:
    return [{"Name": "PGPASSWORD", "ValueFrom": Sub("${S}:password::", S=secret)}]


def add_api(t: Template, names: Names) -> None:
    t.add_resource(make(ecs.Cluster, "ApiCluster", {"ClusterSettings": [
        {"Name": "containerInsights", "Value": "enabled"}]}))
    env = {**common(names), "GPUFLEET_CACHE": cache_url(), "GPUFLEET_API_ALLOW": Ref("ApiAllow"),
           "GPUFLEET_API_DENY": Ref("ApiDeny"), "GPUFLEET_API_TRUSTED_PROXIES": Ref("VpcCidr")}
    container: dict[str, Any] = {
        "Name": "api", "Image": Ref("ServiceImageUri"), "Essential": True,
        "EntryPoint": ["sh", "-c"],
        "Command": [f"gpufleet init && exec gpufleet api --host 0.0.0.0 --port {API_PORT}"],
        "PortMappings": [{"ContainerPort": API_PORT, "Protocol": "tcp"}],
        "Environment": [{"Name": k, "Value": v} for k, v in env.items()],
        "Secrets": If("MakeDatabase", _password(Ref(DB_SECRET)), If(
            "GivenDatabaseSecret", _password(Ref("DatabaseSecretArn")), NoValue)),
        "ReadonlyRootFilesystem": False,
        "LogConfiguration": {"LogDriver": "awslogs", "Options": {
            "awslogs-group": names.log_group("api"), "awslogs-region": Ref("AWS::Region"),
            "awslogs-stream-prefix": "api"}}}
    t.add_resource(make(ecs.TaskDefinition, "ApiTaskDefinition", {
        "Family": f"{names.prefix}-api", "RequiresCompatibilities": ["FARGATE"],
        "NetworkMode": "awsvpc", "Cpu": "1024", "Memory": "2048",
        "ExecutionRoleArn": GetAtt(API_EXECUTION_ROLE, "Arn"),
        "TaskRoleArn": GetAtt(API_ROLE, "Arn"), "ContainerDefinitions": [container]}))
    t.add_resource(make(elb.LoadBalancer, "ApiLoadBalancer", {
        "Scheme": "internet-facing", "Type": "application", "Subnets": public_subnets(),
        "SecurityGroups": [Ref(ALB_SG)],
        "LoadBalancerAttributes": [
            {"Key": "routing.http.drop_invalid_header_fields.enabled", "Value": "true"}]}))
    t.add_resource(make(elb.TargetGroup, "ApiTargets", {
        "TargetType": "ip", "Protocol": "HTTP", "Port": API_PORT, "VpcId": vpc_id(),
        "HealthCheckPath": "/healthz", "HealthCheckIntervalSeconds": 15,
        "TargetGroupAttributes": [{"Key": "deregistration_delay.timeout_seconds",
                                   "Value": "30"}]}))
    forward = [{"Type": "forward", "TargetGroupArn": Ref("ApiTargets")}]
    redirect = [{"Type": "redirect", "RedirectConfig": {
        "Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_301"}}]
    t.add_resource(make(elb.Listener, "ApiHttpListener", {
        "LoadBalancerArn": Ref("ApiLoadBalancer"), "Protocol": "HTTP", "Port": 80,
        "DefaultActions": If("Https", redirect, forward)}))
    https = make(elb.Listener, "ApiHttpsListener", {
        "LoadBalancerArn": Ref("ApiLoadBalancer"), "Protocol": "HTTPS", "Port": 443,
        "Certificates": [{"CertificateArn": Ref("CertificateArn")}],
        "SslPolicy": "ELBSecurityPolicy-TLS13-1-2-2021-06", "DefaultActions": forward})
    https.Condition = "Https"
    t.add_resource(https)
    service = make(ecs.Service, "ApiService", {
        "Cluster": Ref("ApiCluster"), "LaunchType": "FARGATE",
        "TaskDefinition": Ref("ApiTaskDefinition"), "DesiredCount": Ref("ApiTasks"),
        "NetworkConfiguration": {"AwsvpcConfiguration": {
            "Subnets": private_subnets(), "SecurityGroups": [Ref(API_SG)],
            "AssignPublicIp": "DISABLED"}},
        "LoadBalancers": [{"ContainerName": "api", "ContainerPort": API_PORT,
                           "TargetGroupArn": Ref("ApiTargets")}],
        "HealthCheckGracePeriodSeconds": 120,
        "DeploymentConfiguration": {"DeploymentCircuitBreaker": {"Enable": True,
                                                                  "Rollback": True}}})
    service.DependsOn = ["ApiHttpListener"]
    t.add_resource(service)
