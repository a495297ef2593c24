"""The stack's parameters (each with its range), its conditions, and defaults set at build time.

Every choice a deployer makes at ``aws cloudformation deploy`` time is a parameter with a
default that works; each number has the range CloudFormation enforces, and
``with_defaults`` checks a default given to ``gpufleet deploy aws --set`` against that
same range, so a value out of range is one clear line before any stack is made.
Empty strings mean "create it": no VPC id makes a VPC, no database URL makes RDS.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from troposphere import Equals, Join, Not, Parameter, Ref, Template

from gpufleet.errors import ConfigError

# name -> (type, default, description, constraints)
_NUMBER = "Number"
_TEXT = "String"
PARAMETERS: dict[str, tuple[str, Any, str, dict[str, Any]]] = {
    "WorkerImageUri": (_TEXT, "", "The CUDA image (deploy/docker/Dockerfile.cuda) in ECR, "
                       "e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/gpufleet:cuda-0.1.0",
                       {"MinLength": 1}),
    "ServiceImageUri": (_TEXT, "", "The CPU image (deploy/docker/Dockerfile) in ECR: the API "
                        "and the trigger function run it", {"MinLength": 1}),
    "GpuAmiId": ("AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>",
                 "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/"
                 "latest/ami-id", "A GPU AMI with the NVIDIA driver, Docker and the NVIDIA "
                 "container toolkit (an SSM parameter naming it)", {}),
    "InstanceType1": (_TEXT, "g5.xlarge", "First choice of GPU instance type",
                      {"AllowedPattern": r"^[a-z][a-z0-9-]*\.[a-z0-9]+$"}),
    "InstanceType2": (_TEXT, "g6.xlarge", "Another GPU type for spot (empty: none)",
                      {"AllowedPattern": r"^([a-z][a-z0-9-]*\.[a-z0-9]+)?$"}),
    "InstanceType3": (_TEXT, "g5.2xlarge", "Another GPU type for spot (empty: none)",
                      {"AllowedPattern": r"^([a-z][a-z0-9-]*\.[a-z0-9]+)?$"}),
    "InstanceType4": (_TEXT, "g4dn.xlarge", "Another GPU type for spot (empty: none)",
                      {"AllowedPattern": r"^([a-z][a-z0-9-]*\.[a-z0-9]+)?$"}),
    "MaxWorkers": (_NUMBER, 10, "Most GPU machines at once", {"MinValue": 1, "MaxValue": 1000}),
    "OnDemandBase": (_NUMBER, 0, "On-demand machines kept under the spot ones when any run",
                     {"MinValue": 0, "MaxValue": 1000}),
    "WarmPoolSize": (_NUMBER, 0, "Stopped, bootstrapped machines kept ready (on-demand only: "
                     "AWS has no warm pool for a mixed-instances group)",
                     {"MinValue": 0, "MaxValue": 100}),
    "CooldownS": (_NUMBER, 60, "Seconds a worker stays idle before it is drained",
                  {"MinValue": 0, "MaxValue": 3600}),
    "ChunkSize": (_NUMBER, 32, "Items per task (GPUFLEET_CHUNK_SIZE)",
                  {"MinValue": 1, "MaxValue": 10000}),
    "VisibilityTimeoutS": (_NUMBER, 60, "Task lease in seconds (GPUFLEET_VISIBILITY_TIMEOUT_S)",
                           {"MinValue": 1, "MaxValue": 43200}),
    "MaxReceives": (_NUMBER, 5, "Deliveries before a task is dead-lettered",
                    {"MinValue": 1, "MaxValue": 1000}),
    "DrainGraceS": (_NUMBER, 120, "Seconds a worker may take to finish on scale-in (the "
                    "lifecycle hook waits 600 s)", {"MinValue": 10, "MaxValue": 420}),
    "ManifestPrefix": (_TEXT, "manifests/", "Folder of the manifest bucket that makes jobs",
                       {"AllowedPattern": r"^([A-Za-z0-9!_.*'()-]+/)*$"}),
    "KmsKeyArn": (_TEXT, "", "A KMS key for buckets, queues and secrets (empty: the stack "
                  "makes one)", {"AllowedPattern": r"^(arn:aws[a-z-]*:kms:.+)?$"}),
    "VpcId": (_TEXT, "", "An existing VPC (empty: the stack makes one)",
              {"AllowedPattern": r"^(vpc-[0-9a-f]+)?$"}),
    "VpcCidr": (_TEXT, "10.42.0.0/16", "The VPC's range (made or given): the API trusts "
                "X-Forwarded-For from the load balancer within it",
                {"AllowedPattern": r"^\d{1,3}(\.\d{1,3}){3}/(1[6-9]|2[0-4])$"}),
    "PrivateSubnetIds": ("CommaDelimitedList", "", "With VpcId: two or more private subnets "
                         "(with a route to S3, SQS and AWS APIs)", {}),
    "PublicSubnetIds": ("CommaDelimitedList", "", "With VpcId: two or more public subnets for "
                        "the load balancer", {}),
    "DatabaseUrl": (_TEXT, "", "An existing PostgreSQL, postgresql://user@host/db (empty: "
                    "the stack makes RDS PostgreSQL)",
                    {"AllowedPattern": r"^(postgresql://\S+)?$"}),
    "DatabaseSecretArn": (_TEXT, "", "With DatabaseUrl: a secret whose 'password' is the "
                          "database password (empty: none)",
                          {"AllowedPattern": r"^(arn:aws[a-z-]*:secretsmanager:.+)?$"}),
    "DatabaseInstanceClass": (_TEXT, "db.t4g.medium", "RDS instance class",
                              {"AllowedPattern": r"^db\.[a-z0-9]+\.[a-z0-9]+$"}),
    "CacheUrl": (_TEXT, "", "An existing Redis for the API's cache, rediss://host:port/db "
                 "(empty: the stack makes ElastiCache)", {"AllowedPattern": r"^(rediss?://\S+)?$"}),
    "CacheNodeType": (_TEXT, "cache.t4g.small", "ElastiCache node type",
                      {"AllowedPattern": r"^cache\.[a-z0-9]+\.[a-z0-9]+$"}),
    "CertificateArn": (_TEXT, "", "An ACM certificate: the API is served over HTTPS (empty: "
                       "HTTP only)", {"AllowedPattern": r"^(arn:aws[a-z-]*:acm:.+)?$"}),
    "ApiAllow": (_TEXT, "", "Client CIDRs allowed by the API, comma-separated (empty: anyone)",
                 {"AllowedPattern": r"^[0-9a-fA-F:./, ]*$"}),
    "ApiDeny": (_TEXT, "", "Client CIDRs refused by the API, comma-separated (wins)",
                {"AllowedPattern": r"^[0-9a-fA-F:./, ]*$"}),
    "ApiTasks": (_NUMBER, 1, "API containers on Fargate", {"MinValue": 0, "MaxValue": 20}),
    "OldestTaskAlarmS": (_NUMBER, 3600, "Alarm when a task has waited this long",
                         {"MinValue": 60, "MaxValue": 1209600}),
    "AlarmEmail": (_TEXT, "", "Where alarms are mailed (empty: the topic only)",
                   {"AllowedPattern": r"^([^@\s]+@[^@\s]+)?$"}),
    "LogRetentionDays": (_NUMBER, 30, "Days logs are kept",
                         {"AllowedValues": [1, 3, 5, 7, 14, 30, 60, 90, 180, 365, 731]}),
}

CONDITIONS = {
    "MakeKey": Equals(Ref("KmsKeyArn"), ""),
    # Made unless any of the three is given (one condition on all three: cfn-lint then
    # knows each is set wherever the template uses it).
    "MakeVpc": Equals(Join("", [Ref("VpcId"), Join(",", Ref("PrivateSubnetIds")),
                                Join(",", Ref("PublicSubnetIds"))]), ""),
    "MakeDatabase": Equals(Ref("DatabaseUrl"), ""),
    "GivenDatabaseSecret": Not(Equals(Ref("DatabaseSecretArn"), "")),
    "MakeCache": Equals(Ref("CacheUrl"), ""),
    "Https": Not(Equals(Ref("CertificateArn"), "")),
    "HasType2": Not(Equals(Ref("InstanceType2"), "")),
    "HasType3": Not(Equals(Ref("InstanceType3"), "")),
    "HasType4": Not(Equals(Ref("InstanceType4"), "")),
    "WarmPool": Not(Equals(Ref("WarmPoolSize"), "0")),
    "MailAlarms": Not(Equals(Ref("AlarmEmail"), "")),
}
# Derived ones, which name the ones above.
DERIVED_CONDITIONS = {
    "SpotFleet": Equals(Ref("WarmPoolSize"), "0"),
}


def add_parameters(template: Template, defaults: Mapping[str, str] | None = None) -> None:
    """Every parameter, with defaults overridden as given (checked), and the conditions."""
    chosen = with_defaults(defaults or {})
    for name, (kind, _, description, constraints) in PARAMETERS.items():
        default = chosen[name]
        param = Parameter(name, Type=kind, Description=description, **constraints)
        if default != "" or kind != _TEXT or "MinLength" not in constraints:
            param.Default = default
        template.add_parameter(param)
    for name, condition in {**CONDITIONS, **DERIVED_CONDITIONS}.items():
        template.add_condition(name, condition)


def with_defaults(given: Mapping[str, str]) -> dict[str, Any]:
    """The defaults, with given overrides checked against each parameter's constraints."""
    chosen = {name: spec[1] for name, spec in PARAMETERS.items()}
    for name, raw in given.items():
        if name not in PARAMETERS:
            raise ConfigError(f"--set {name}: no such parameter; known: "
                              + ", ".join(sorted(PARAMETERS)))
        chosen[name] = check_value(name, raw)
    return chosen


def check_value(name: str, raw: str) -> Any:
    """raw as the parameter's value, or ConfigError saying which constraint it breaks."""
    import re

    kind, _, _, constraints = PARAMETERS[name]
    if kind == _NUMBER:
        try:
            value: Any = int(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r}: expected a whole number") from None
        low, high = constraints.get("MinValue"), constraints.get("MaxValue")
        if (low is not None and value < low) or (high is not None and value > high):
            raise ConfigError(f"{name}={value}: out of range, expected {low} to {high}")
        allowed = constraints.get("AllowedValues")
        if allowed and value not in allowed:
            raise ConfigError(f"{name}={value}: expected one of "
                              + ", ".join(map(str, allowed)))
        return value
    pattern = constraints.get("AllowedPattern")
    if pattern and not re.fullmatch(pattern, raw):
        raise ConfigError(f"{name}={raw!r}: does not match {pattern}")
    if len(raw) < constraints.get("MinLength", 0):
        raise ConfigError(f"{name}: must not be empty")
    return raw
