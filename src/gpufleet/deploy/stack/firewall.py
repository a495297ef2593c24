"""Security groups: who may open a connection to whom, and nothing else.

Nothing accepts connections but the load balancer (from clients), the API containers
(from the load balancer), PostgreSQL (from workers, the trigger and the API) and Redis
(from the API). Workers and the trigger accept nothing: they only call out.
"""

from __future__ import annotations

from typing import Any

from troposphere import Ref, Template, ec2

from gpufleet.deploy.stack.names import ALB_SG, API_SG, CACHE_SG, DB_SG, TRIGGER_SG, WORKER_SG
from gpufleet.deploy.stack.network import vpc_id
from gpufleet.deploy.stack.parts import make

API_PORT = 8000


def _from(group: str, port: int) -> dict[str, Any]:
    return {"IpProtocol": "tcp", "FromPort": port, "ToPort": port,
            "SourceSecurityGroupId": Ref(group)}


def add_security_groups(t: Template) -> None:
    def group(name: str, what: str, ingress: list[dict[str, Any]],
              condition: str | None = None) -> None:
        sg = make(ec2.SecurityGroup, name, {
            "GroupDescription": what, "VpcId": vpc_id(),
            **({"SecurityGroupIngress": ingress} if ingress else {})})
        if condition:
            sg.Condition = condition
        t.add_resource(sg)

    group(WORKER_SG, "gpufleet workers: outbound only", [])
    group(TRIGGER_SG, "gpufleet trigger function: outbound only", [])
    web = [{"IpProtocol": "tcp", "FromPort": port, "ToPort": port, "CidrIp": "0.0.0.0/0"}
           for port in (80, 443)]
    # Clients are filtered by the API itself (ApiAllow/ApiDeny), which sees their address
    # in X-Forwarded-For; a security group could allow, but never deny a range.
    group(ALB_SG, "gpufleet API load balancer: HTTP and HTTPS from clients", web)
    group(API_SG, "gpufleet API containers: from the load balancer", [_from(ALB_SG, API_PORT)])
    group(DB_SG, "gpufleet PostgreSQL: from workers, trigger and API",
          [_from(g, 5432) for g in (WORKER_SG, TRIGGER_SG, API_SG)], "MakeDatabase")
    group(CACHE_SG, "gpufleet Redis: from the API", [_from(API_SG, 6379)], "MakeCache")
