"""The Lambda trigger: a manifest event becomes a job, then one controller step sizes the fleet.

The stack (``deploy.stack.trigger``) invokes ``handler`` two ways:

- the manifest bucket's notification, with S3's event document: each ``ObjectCreated``
  record under the manifest prefix goes through ``Ingest``, the code path of every inbox
  (``intake``), so a manifest version is taken once and makes at most one job (S3 may
  deliver an event twice; Lambda retries a failed call), and a bad manifest or an object
  that is not one is refused once, with its reason, and never retried;
- the one-minute schedule, with EventBridge's "Scheduled Event": only the step.

Either way one controller step runs (``autoscale.controller``: sweep, read backlog and
fleet, decide, resize the Auto Scaling group), then the schedule is switched: enabled
while a job is open or a machine runs, disabled once every job is finished and the
fleet is at zero. Nothing runs, and nothing polls, while there is no work.

Configuration is the GPUFLEET_* settings every process of the stack gets, plus the
trigger's own (not GPUFLEET_*, which are all gpufleet settings):

- ``TRIGGER_RULE``: the schedule's EventBridge rule name (required);
- ``TRIGGER_MAX_WORKERS`` (10) and ``TRIGGER_COOLDOWN_S`` (60): the controller's limits;
- ``TRIGGER_PREFIX``: the manifest prefix ("" for the whole bucket);
- ``TRIGGER_DB_SECRET``: a Secrets Manager secret whose ``password`` becomes PGPASSWORD.

Transient trouble (the index, queue or store unreachable) raises after the step, so
Lambda calls again with the same event; what was taken already is recognised then.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gpufleet import aws
from gpufleet.autoscale.controller import Controller, Estimates
from gpufleet.autoscale.policy import PolicyConfig
from gpufleet.autoscale.providers.aws import AwsProvider
from gpufleet.config import Settings
from gpufleet.errors import ConfigError, Unavailable
from gpufleet.index import Index
from gpufleet.index.fleet_records import FleetRecords
from gpufleet.intake.event import EventInbox, buckets_in
from gpufleet.intake.ingest import Ingest

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class TriggerConfig:
    rule: str
    max_workers: int = 10
    cooldown_s: float = 60.0
    prefix: str = ""
    db_secret: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TriggerConfig:
        env = os.environ if env is None else env
        rule = env.get("TRIGGER_RULE", "")
        if not rule:
            raise ConfigError("TRIGGER_RULE is not set: the schedule's EventBridge rule name")
        try:
            max_workers = int(env.get("TRIGGER_MAX_WORKERS", "10"))
            cooldown_s = float(env.get("TRIGGER_COOLDOWN_S", "60"))
        except ValueError as exc:
            raise ConfigError(f"TRIGGER_MAX_WORKERS / TRIGGER_COOLDOWN_S: {exc}") from None
        if max_workers < 1 or cooldown_s < 0:
            raise ConfigError("TRIGGER_MAX_WORKERS must be at least 1 and TRIGGER_COOLDOWN_S "
                              "zero or more")
        return cls(rule=rule, max_workers=max_workers, cooldown_s=cooldown_s,
                   prefix=env.get("TRIGGER_PREFIX", ""), db_secret=env.get("TRIGGER_DB_SECRET", ""))


def handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """Lambda's entry point; returns what it did (also logged, one line per manifest)."""
    config = TriggerConfig.from_env()
    _database_password(config.db_secret)
    settings = Settings.from_env()
    # Lambda's own handler on the root logger writes to CloudWatch; gpufleet's records reach
    # it at the level the settings say (info by default, like the controller's).
    logging.getLogger("gpufleet").setLevel((settings.log_level or "info").upper())
    _migrate(settings)
    index = Index(settings.db)
    try:
        manifests, retry = take(settings, index, event, prefix=config.prefix)
        step = run_step(settings, index, config)
    finally:
        index.close()
    if retry:
        raise Unavailable("transient trouble with " + ", ".join(retry) + "; Lambda calls "
                          "again with this event (what was taken is recognised then)")
    return {"manifests": manifests, **step}


def take(settings: Settings, index: Index, event: Mapping[str, Any], *, prefix: str
         ) -> tuple[list[dict[str, Any]], list[str]]:
    """Each manifest the event names, through Ingest; (what became of each, keys to retry)."""
    if not isinstance(event.get("Records"), list):
        if event.get("source") != "aws.events":
            log.error("not an S3 event nor the schedule's: %.200s", json.dumps(event))
        return [], []
    records = FleetRecords(index)
    outcomes: list[dict[str, Any]] = []
    retry: list[str] = []
    for bucket in buckets_in(event):
        inbox = EventInbox.from_event(event, bucket, prefix=prefix, input=settings.input)
        for key in inbox.outside:
            log.error("s3://%s/%s: not under the manifest prefix %r: ignored", bucket, key,
                      prefix)
            outcomes.append({"key": key, "outcome": "ignored", "reason": "outside prefix"})
        seen = {a.key: records.manifest(inbox.uri, a.key, a.version) for a in inbox.arrivals()}
        Ingest(settings, index, inbox, model=settings.model).poll()
        for arrival in inbox.arrivals():
            before, after = seen[arrival.key], records.manifest(inbox.uri, arrival.key,
                                                                arrival.version)
            outcome = _outcome(arrival.key, arrival.version, before, after, inbox.unsettled)
            if before is not None:
                log.info("%s%s (%s): duplicate event, no new job (%s)", inbox.uri,
                         arrival.key, arrival.version, outcome["reason"])
            outcomes.append(outcome)
        retry += [inbox.uri + key for key in inbox.unsettled]
    return outcomes, retry


def _outcome(key: str, version: str, before: Any, after: Any, unsettled: list[str]
             ) -> dict[str, Any]:
    doc: dict[str, Any] = {"key": key, "version": version}
    if before is not None:
        return {**doc, "outcome": "duplicate", "job": before.job_id,
                "reason": f"this version was {before.state} already"
                + (f" as job {before.job_id}" if before.job_id else "")}
    if after is None or key in unsettled:
        return {**doc, "outcome": "retry", "reason": "transient trouble"}
    if after.state == "accepted":
        return {**doc, "outcome": "job", "job": after.job_id}
    return {**doc, "outcome": "refused", "reason": after.reason}


def run_step(settings: Settings, index: Index, config: TriggerConfig) -> dict[str, Any]:
    """One controller step on the Auto Scaling group, then the schedule switched to match."""
    model = settings.model
    fleet = settings.fleet
    provider = AwsProvider(settings, model=model)
    controller = Controller(
        settings, index, provider, model=model, estimates=Estimates.for_model(model),
        config=PolicyConfig(max_workers=config.max_workers, cooldown_s=config.cooldown_s,
                            target_drain_s=fleet.target_drain_s,
                            spot_price_per_h=fleet.spot_price_per_h,
                            on_demand_price_per_h=fleet.on_demand_price_per_h))
    try:
        decision = controller.tick()
        depth = controller.queue.depth()
        open_jobs = FleetRecords(index).open_jobs(model)
        machines = provider.machines()
    finally:
        controller.close()
    idle = not open_jobs and not machines and depth.queued + depth.in_flight == 0
    events = aws.client("events")
    try:
        (events.disable_rule if idle else events.enable_rule)(Name=config.rule)
    except Exception as exc:  # botocore's errors: the next call switches it again
        raise Unavailable(f"EventBridge rule {config.rule}: {exc}") from exc
    state = "disabled" if idle else "enabled"
    log.info("step: desired %d, %d open job(s), %d machine(s); schedule %s",
             decision.desired, len(open_jobs), len(machines), state)
    return {"desired": decision.desired, "open_jobs": len(open_jobs),
            "machines": len(machines), "schedule": state}


def _database_password(secret: str) -> None:
    """PGPASSWORD from the secret's ``password``, once per process (Lambda reuses it)."""
    if not secret or "PGPASSWORD" in os.environ:
        return
    try:
        value = aws.client("secretsmanager").get_secret_value(SecretId=secret)["SecretString"]
        os.environ["PGPASSWORD"] = json.loads(value)["password"]
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"secret {secret}: no 'password' in it ({exc})") from None
    except Exception as exc:
        raise Unavailable(f"secret {secret}: {exc}") from exc


def _migrate(settings: Settings) -> None:
    """The index at this release's schema (the API's containers do the same on start)."""
    from gpufleet.index.migrate import upgrade

    upgrade(settings.db)
