"""The index and the cache: RDS PostgreSQL and ElastiCache Redis, unless URLs of existing ones
are given.

PostgreSQL is encrypted with the stack's key, Multi-AZ, in the private subnets, with its
password generated into Secrets Manager (never a parameter, never in a template or user
data); every process reads it from there into PGPASSWORD. It is snapshotted when the
stack is deleted. Redis (only the API's cache: losing it loses nothing) speaks TLS only
and is encrypted at rest.
"""

from __future__ import annotations

from typing import Any

from troposphere import If, Ref, Sub, Template, elasticache, rds, secretsmanager

from gpufleet.deploy.stack.names import CACHE, CACHE_SG, DATABASE, DB_SECRET, DB_SG
from gpufleet.deploy.stack.network import private_subnets
from gpufleet.deploy.stack.parts import make
from gpufleet.deploy.stack.storage import key_arn


def secret_arn() -> Any:
    """The database password's secret: the stack's, the given one, or "" (none)."""
    return If("MakeDatabase", Ref(DB_SECRET), Ref("DatabaseSecretArn"))


def add_datastores(t: Template) -> None:
    secret = make(secretsmanager.Secret, DB_SECRET, {
        "Description": Sub("gpufleet ${AWS::StackName}: PostgreSQL password"),
        "KmsKeyId": key_arn(),
        "GenerateSecretString": {"SecretStringTemplate": '{"username": "gpufleet"}',
                                 "GenerateStringKey": "password", "PasswordLength": 40,
                                 "ExcludeCharacters": "\"@/\\'"}})
    secret.Condition = "MakeDatabase"
    t.add_resource(secret)
    subnets = make(rds.DBSubnetGroup, "DatabaseSubnets", {
        "DBSubnetGroupDescription": "gpufleet index", "SubnetIds": private_subnets()})
    subnets.Condition = "MakeDatabase"
    t.add_resource(subnets)
    database = make(rds.DBInstance, DATABASE, {
        "Engine": "postgres",
        # A minor version RDS still creates (cfn-lint knows which are deprecated).
        "EngineVersion": "17.5", "DBInstanceClass": Ref(
            "DatabaseInstanceClass"),
        "AllocatedStorage": "50", "StorageType": "gp3", "StorageEncrypted": True,
        "KmsKeyId": key_arn(), "MultiAZ": True, "DBName": "gpufleet",
        "MasterUsername": "gpufleet",
        "MasterUserPassword": Sub(f"{{{{resolve:secretsmanager:${{{DB_SECRET}}}:SecretString:"
                                  "password}}"),
        "DBSubnetGroupName": Ref("DatabaseSubnets"), "VPCSecurityGroups": [Ref(DB_SG)],
        "PubliclyAccessible": False, "BackupRetentionPeriod": 7,
        "DeletionProtection": False, "EnableIAMDatabaseAuthentication": False,
        "AutoMinorVersionUpgrade": True, "CopyTagsToSnapshot": True})
    database.Condition = "MakeDatabase"
    database.DeletionPolicy = database.UpdateReplacePolicy = "Snapshot"
    t.add_resource(database)
    # The secret then also records the host and port, as RDS's own rotation expects.
    t.add_resource(make(secretsmanager.SecretTargetAttachment, "DatabaseSecretTarget", {
        "SecretId": Ref(DB_SECRET), "TargetId": Ref(DATABASE),
        "TargetType": "AWS::RDS::DBInstance"}, Condition="MakeDatabase"))
    cache_subnets = make(elasticache.SubnetGroup, "CacheSubnets", {
        "Description": "gpufleet cache", "SubnetIds": private_subnets()})
    cache_subnets.Condition = "MakeCache"
    t.add_resource(cache_subnets)
    cache = make(elasticache.ReplicationGroup, CACHE, {
        "ReplicationGroupDescription": "gpufleet API cache", "Engine": "redis",
        "CacheNodeType": Ref("CacheNodeType"), "NumCacheClusters": 2,
        "AutomaticFailoverEnabled": True, "MultiAZEnabled": True,
        "TransitEncryptionEnabled": True, "AtRestEncryptionEnabled": True,
        "KmsKeyId": key_arn(), "CacheSubnetGroupName": Ref("CacheSubnets"),
        "SecurityGroupIds": [Ref(CACHE_SG)]})
    cache.Condition = "MakeCache"
    t.add_resource(cache)
