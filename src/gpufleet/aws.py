"""boto3 clients made one way for every part of gpufleet: the standard AWS configuration.

Credentials, endpoints (``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_<SERVICE>``),
the region and retries come from the chain every AWS tool reads: the
environment, the profile (``AWS_PROFILE``, ``~/.aws/config``), instance and
task roles. Two things boto3 left alone gets wrong for us:

- the region: boto3 reads ``AWS_DEFAULT_REGION`` and the profile but not
  ``AWS_REGION``, which the AWS CLI v2, the other SDKs, ECS and Lambda set
  and prefer. ``AWS_REGION`` comes first here, as there.
- retries: a ``Config(retries=...)`` given to a client overrides
  ``AWS_MAX_ATTEMPTS`` / ``AWS_RETRY_MODE`` and the profile's ``max_attempts``
  / ``retry_mode``. Only what the user left unset gets a default here: the
  ``standard`` mode (throttling, 5xx and connection errors retried with
  exponential backoff and full jitter, capped at 20 s) and a number of
  attempts chosen per component.

Every client gets a session of its own: boto3's default session is not safe
to build clients from in several threads.
"""

from __future__ import annotations

import os
from typing import Any

from gpufleet.errors import ConfigError


def client(service: str, *, region: str | None = None, attempts: int = 5,
           **options: Any) -> Any:
    """A boto3 client for service; options are botocore ``Config`` options.

    region (a queue URL's, say) wins over ``AWS_REGION``, which wins over
    boto3's own chain. ConfigError if boto3 is missing, no region is set for a
    regional service, or the profile or config file is broken.
    """
    try:
        import boto3
        import botocore.session
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, NoRegionError
    except ImportError:
        raise ConfigError(f"AWS ({service}) needs boto3: pip install 'gpufleet[aws]'") from None
    try:
        core = botocore.session.Session()
        config = Config(retries=_unset_retries(core, attempts), **options)
        return boto3.session.Session(botocore_session=core).client(
            service, region_name=region or os.environ.get("AWS_REGION") or None, config=config)
    except NoRegionError:
        raise ConfigError(f"no AWS region for {service}: set AWS_REGION (or a profile with "
                          "a region)") from None
    except BotoCoreError as exc:  # a missing profile, an unreadable config file, ...
        raise ConfigError(f"AWS configuration for {service}: {exc}") from exc


def _unset_retries(core: Any, attempts: int) -> dict[str, Any]:
    """Retry settings for what the environment and the profile leave unset."""
    profile = core.get_scoped_config()
    retries: dict[str, Any] = {}
    if "AWS_RETRY_MODE" not in os.environ and "retry_mode" not in profile:
        retries["mode"] = "standard"  # older botocore defaults to "legacy"
    if core.get_config_variable("max_attempts") is None:
        retries["total_max_attempts"] = attempts
    return retries
