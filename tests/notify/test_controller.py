"""The controller's tick delivers notifications, beside the tick rather than in it."""

from __future__ import annotations

import json

from gpufleet.autoscale.controller import Controller, Estimates
from gpufleet.autoscale.policy import PolicyConfig
from gpufleet.autoscale.providers.local import LocalProvider
from gpufleet.index.outbox import Outbox
from gpufleet.jobs import JobRequest, create_job
from gpufleet.models.base import canonical_spec
from gpufleet.notify.targets import TargetStore
from tests.conftest import Home
from tests.notify.receiver import receiver

MODEL = canonical_spec("synthetic?item_ms=10")


def test_a_tick_sends_a_cancelled_jobs_events(home: Home) -> None:
    home.env.update(GPUFLEET_NOTIFY_ALLOW_HTTP="1", GPUFLEET_NOTIFY_ALLOW_PRIVATE="1")
    settings, index = home.settings, home.index()
    with receiver() as hook:
        # Given a job with a webhook, cancelled, and a controller allowed no workers
        job = create_job(settings, index, JobRequest(items=["k0", "k1"], model=MODEL,
                                                     input=settings.input)).id
        TargetStore(index, settings.notify).add(hook.url, tenant="default", job_id=job)
        index.cancel_job(job)
        ctl = Controller(settings, index, LocalProvider.for_pool(settings, model=MODEL),
                         model=MODEL, config=PolicyConfig(max_workers=0),
                         estimates=Estimates())
        try:
            # When it ticks, and its notification pass is over
            ctl.tick()
            ctl.notifications.join(30)
        finally:
            ctl.close()
            index.close()
    # Then the webhook heard the job was created, then cancelled with its counts
    events = [json.loads(r.body) for r in hook.received]
    assert [(e["event"], e["state"]) for e in events] == [("job.created", "cancelled"),
                                                          ("job.finished", "cancelled")]
    assert events[1]["job"]["cancelled"] == 2


def test_a_jobs_created_event_is_written_when_the_job_is_made(home: Home) -> None:
    settings, index = home.settings, home.index()
    try:
        # Given a tenant-wide SNS target (only written here, never sent)
        TargetStore(index, settings.notify).add(
            "arn:aws:sns:us-east-1:123456789012:jobs", tenant="default")
        # When a job is made
        job = create_job(settings, index, JobRequest(items=["k0"], model=MODEL,
                                                     input=settings.input))
        # Then its created event is in the outbox already, saying it is queued
        (row,) = Outbox(index).rows(job_id=job.id)
        assert row.event == "job.created" and row.state == "pending"
        assert json.loads(row.body)["state"] == "queued"
    finally:
        index.close()
