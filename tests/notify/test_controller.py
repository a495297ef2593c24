"""The controller's tick delivers notifications, beside the tick rather than in it."""

from __future__ import annotations

import json

from gpufleet.autoscale.controller import Controller, Estimates
from gpufleet.autoscale.policy import PolicyConfig
from gpufleet.autoscale.providers.local import LocalProvider
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
