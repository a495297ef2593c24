"""Storage: the KMS key, and the input, results and manifest buckets with their policies.

All three buckets are encrypted with the stack's key (or the given one), with S3 Bucket
Keys so each object does not cost a KMS call; public access is blocked and ACLs are off;
a bucket policy refuses any request not made over TLS. Results are versioned (a rerun
keeps the earlier result as an older version) and outlive the stack. Manifests are
versioned too: each event then names its object version, which is what makes a
duplicate event recognisable (``intake.ingest``). The manifest bucket notifies the
trigger for each manifest suffix gpufleet reads, under the manifest prefix.
"""

from __future__ import annotations

from typing import Any

from troposphere import GetAtt, If, Ref, Sub, Template, kms, s3

from gpufleet.deploy.stack.names import (
    INPUT_BUCKET,
    KEY,
    MANIFEST_BUCKET,
    RESULTS_BUCKET,
    TRIGGER_FUNCTION,
    Names,
)
from gpufleet.deploy.stack.parts import make
from gpufleet.manifest import FORMATS

BUCKETS = {INPUT_BUCKET: "input", RESULTS_BUCKET: "results", MANIFEST_BUCKET: "manifests"}
S3_PERMISSION = "ManifestBucketMayInvokeTrigger"
# Each manifest format, plain or gzipped: S3 takes one suffix per notification.
MANIFEST_SUFFIXES = [*FORMATS, *(f"{suffix}.gz" for suffix in FORMATS)]


def key_arn() -> Any:
    return If("MakeKey", GetAtt(KEY, "Arn"), Ref("KmsKeyArn"))


def add_storage(t: Template, names: Names) -> None:
    key = make(kms.Key, KEY, {
        "Description": Sub("gpufleet ${AWS::StackName}: buckets, queues, secrets"),
        "EnableKeyRotation": True,
        "KeyPolicy": {"Version": "2012-10-17", "Statement": [{
            # The account administers the key; each role's own policy grants its use.
            "Sid": "AccountAdministers", "Effect": "Allow",
            "Principal": {"AWS": Sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root")},
            "Action": "kms:*", "Resource": "*"}]}})
    key.Condition = "MakeKey"
    key.DeletionPolicy = key.UpdateReplacePolicy = "Retain"  # retained results need it
    t.add_resource(key)
    for logical, role in BUCKETS.items():
        t.add_resource(_bucket(logical, role, names))
        t.add_resource(make(s3.BucketPolicy, f"{logical}Policy", {
            "Bucket": Ref(logical), "PolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Sid": "TlsOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
                "Resource": [names.bucket_arn(role), names.bucket_arn(role, objects=True)],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}}))


def _bucket(logical: str, role: str, names: Names) -> s3.Bucket:
    props: dict[str, Any] = {
        "BucketName": names.bucket(role),
        "BucketEncryption": {"ServerSideEncryptionConfiguration": [{
            "ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms",
                                              "KMSMasterKeyID": key_arn()},
            "BucketKeyEnabled": True}]},
        "PublicAccessBlockConfiguration": {
            "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True},
        "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
    }
    if logical in (RESULTS_BUCKET, MANIFEST_BUCKET):
        props["VersioningConfiguration"] = {"Status": "Enabled"}
    if logical == MANIFEST_BUCKET:
        props["NotificationConfiguration"] = {"LambdaConfigurations": [{
            "Event": "s3:ObjectCreated:*", "Function": GetAtt(TRIGGER_FUNCTION, "Arn"),
            "Filter": {"S3Key": {"Rules": [{"Name": "prefix", "Value": Ref("ManifestPrefix")},
                                           {"Name": "suffix", "Value": suffix}]}}}
            for suffix in MANIFEST_SUFFIXES]}
    bucket = make(s3.Bucket, logical, props)
    if logical == RESULTS_BUCKET:
        bucket.DeletionPolicy = bucket.UpdateReplacePolicy = "Retain"
    if logical == MANIFEST_BUCKET:
        bucket.DependsOn = [S3_PERMISSION]  # S3 checks it may invoke when it is configured
    return bucket
