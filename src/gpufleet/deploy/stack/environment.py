"""The settings every gpufleet process of the stack gets: the same backends, the same knobs.

One function, so the workers, the trigger and the API can never disagree on where the
queue, the index or the buckets are. Values are CloudFormation expressions.
"""

from __future__ import annotations

from typing import Any

from troposphere import If, Ref, Sub

from gpufleet.deploy.stack.names import CACHE, DATABASE, Names
from gpufleet.deploy.stack.storage import key_arn


def _bucket_url(names: Names, role: str) -> Sub:
    return Sub(f"s3://{names.prefix}-{role}-${{AWS::AccountId}}-${{AWS::Region}}/")


def database_url() -> Any:
    return If("MakeDatabase", Sub(f"postgresql://gpufleet@${{{DATABASE}.Endpoint.Address}}:"
                                  f"${{{DATABASE}.Endpoint.Port}}/gpufleet"),
              Ref("DatabaseUrl"))


def common(names: Names) -> dict[str, Any]:
    """GPUFLEET_* (and libpq's) settings shared by every process."""
    return {
        "GPUFLEET_QUEUE": f"sqs://{names.tasks}",
        "GPUFLEET_DB": database_url(),
        "PGSSLMODE": "require",
        "GPUFLEET_INPUT": _bucket_url(names, "input"),
        "GPUFLEET_OUTPUT": _bucket_url(names, "results"),
        "GPUFLEET_MODEL": names.model,
        "GPUFLEET_SSE": "aws:kms",
        "GPUFLEET_SSE_KMS_KEY_ID": key_arn(),
        "GPUFLEET_CHUNK_SIZE": Ref("ChunkSize"),
        "GPUFLEET_VISIBILITY_TIMEOUT_S": Ref("VisibilityTimeoutS"),
        "GPUFLEET_MAX_RECEIVES": Ref("MaxReceives"),
        "GPUFLEET_DRAIN_GRACE_S": Ref("DrainGraceS"),
        "GPUFLEET_AWS_ASG": names.group,
    }


def cache_url() -> Any:
    return If("MakeCache", Sub(f"rediss://${{{CACHE}.PrimaryEndPoint.Address}}:"
                               f"${{{CACHE}.PrimaryEndPoint.Port}}/0"), Ref("CacheUrl"))
