"""Webhooks against a real HTTP receiver: signed, delivered once, retried after failures."""

from __future__ import annotations

import json
import ssl
import threading
import time
from pathlib import Path

import httpx

from gpufleet.domain import ItemStatus
from gpufleet.index.outbox import Outbox
from gpufleet.notify.dispatcher import Dispatcher
from gpufleet.notify.events import notice
from gpufleet.notify.webhook import SIGNATURE_HEADER, verify
from tests.notify.conftest import Notifying
from tests.notify.receiver import receiver, self_signed


def test_a_tenants_webhook_hears_of_its_jobs_created_and_finished_once_signed(
        notifying: Notifying) -> None:
    with receiver() as hook:
        # Given a webhook for tenant a, and a job of a and one of b created after it
        target = notifying.targets.add(hook.url, tenant="a")
        assert target.secret and target.secret.startswith("whsec_")
        job = notifying.job("job-a", items=2)
        notifying.job("job-b", tenant="b")
        dispatcher = notifying.dispatcher()
        # When the dispatcher looks while the job runs, then after it finished, then again
        first = dispatcher.run_once()
        notifying.finish(job, ["k0", "k1"])
        second = dispatcher.run_once()
        third = dispatcher.run_once()
    # Then the receiver got created, then finished with the counts, each once, signed
    assert (first.delivered, second.delivered, third.delivered) == (1, 1, 0)
    events = [json.loads(r.body) for r in hook.received]
    assert [e["event"] for e in events] == ["job.created", "job.finished"]
    assert {e["job"]["job"] for e in events} == {"job-a"}
    finished = events[1]
    assert finished["state"] == "succeeded" and finished["job"]["done"] == 2
    assert finished["tenant"] == "a" and "cost" in finished
    for r in hook.received:
        assert verify(target.secret, r.headers[SIGNATURE_HEADER], r.body, now=time.time())
        assert not verify("whsec_wrong", r.headers[SIGNATURE_HEADER], r.body, now=time.time())
        assert r.headers["X-Gpufleet-Event"] in ("job.created", "job.finished")


def test_a_failing_receiver_is_retried_with_backoff_until_it_answers(
        notifying: Notifying) -> None:
    with receiver(script=[500, 502]) as hook:
        # Given a job's webhook whose receiver fails twice
        job = notifying.job("job-r", items=1)
        notifying.targets.add(hook.url, tenant="a", job_id=job, events="created")
        dispatcher = notifying.dispatcher()
        # When the dispatcher runs, before and after each retry is due (5 s, then 10 s)
        runs = [dispatcher.run_once()]
        runs.append(dispatcher.run_once())  # not due yet
        notifying.clock.advance(5)
        runs.append(dispatcher.run_once())
        notifying.clock.advance(9)
        runs.append(dispatcher.run_once())  # not due yet
        notifying.clock.advance(1)
        runs.append(dispatcher.run_once())
    # Then it was tried three times, the same delivery each time, and delivered at last
    assert [r.status for r in hook.received] == [500, 502, 200]
    assert [(r.retried, r.delivered) for r in runs] == [(1, 0), (0, 0), (1, 0), (0, 0), (0, 1)]
    assert len({r.headers["X-Gpufleet-Delivery"] for r in hook.received}) == 1
    log = Outbox(notifying.index).log(job_id=job)
    assert [(a.attempt, a.ok, a.status) for a in log] == [(1, False, 500), (2, False, 502),
                                                           (3, True, 200)]
    assert [row.state for row in Outbox(notifying.index).rows(job_id=job)] == ["delivered"]


def test_an_event_fails_after_its_last_attempt_or_at_once_on_a_client_error(
        notifying: Notifying) -> None:
    with receiver(script=[500] * 10) as down, receiver(script=[404]) as gone:
        # Given one receiver that always fails and one that answers 404
        job = notifying.job("job-f", items=1)
        notifying.targets.add(down.url, tenant="a", job_id=job, events="created")
        notifying.targets.add(gone.url, tenant="a", job_id=job, events="created")
        dispatcher = notifying.dispatcher()
        # When the dispatcher goes on long enough for every retry (4 attempts at most)
        for _ in range(6):
            dispatcher.run_once()
            notifying.clock.advance(3600)
    # Then the first was tried 4 times, the second once, and both events failed
    assert len(down.received) == 4 and len(gone.received) == 1
    rows = Outbox(notifying.index).rows(job_id=job)
    assert sorted((r.state, r.attempts) for r in rows) == [("failed", 1), ("failed", 4)]
    assert {r.last_error.split(":")[0] for r in rows if r.last_error} == {"HTTP 500",
                                                                          "HTTP 404"}


def test_a_redirect_is_not_followed(notifying: Notifying) -> None:
    with receiver() as elsewhere, receiver(redirect_to=elsewhere.url) as hook:
        # Given a receiver that redirects to another address
        job = notifying.job("job-x", items=1)
        notifying.targets.add(hook.url, tenant="a", job_id=job, events="created")
        # When the event is delivered
        done = notifying.dispatcher().run_once()
    # Then the redirect is an answer that failed it, and the other address heard nothing
    assert done.failed == 1 and len(hook.received) == 1 and not elsewhere.received


def test_progress_comes_at_most_every_interval(notifying: Notifying) -> None:
    with receiver() as hook:
        # Given a job's webhook that wants progress every 30 s
        job = notifying.job("job-p", items=4)
        notifying.targets.add(hook.url, tenant="a", job_id=job, events="progress",
                              progress_s=30)
        dispatcher = notifying.dispatcher()
        # When items finish and the dispatcher looks often, the clock moving 10 s at a time
        dispatcher.run_once()  # nothing done yet: no progress
        for key in ("k0", "k1", "k2"):
            notifying.finish(job, [key])
            dispatcher.run_once()
            notifying.clock.advance(10)
        dispatcher.run_once()  # 30 s after the first progress
        notifying.finish(job, ["k3"])
        dispatcher.run_once()
    # Then progress came twice, 30 s apart, and nothing else (created, finished not asked)
    bodies = [json.loads(r.body) for r in hook.received]
    assert [(b["event"], b["job"]["done"]) for b in bodies] == [("job.progress", 1),
                                                               ("job.progress", 3)]
    assert bodies[1]["at"] - bodies[0]["at"] == 30


def test_a_removed_target_gets_nothing_more(notifying: Notifying) -> None:
    with receiver() as hook:
        # Given a target whose event is written, then the target removed
        job = notifying.job("job-d", items=1)
        target = notifying.targets.add(hook.url, tenant="a", job_id=job)
        dispatcher = notifying.dispatcher()
        dispatcher.run_once()
        notifying.finish(job, ["k0"], ItemStatus.FAILED)
        notice(notifying.index, Outbox(notifying.index),
               notifying.targets.listed())  # finished noticed, not yet sent
        notifying.targets.remove(target.id)
        # When the dispatcher runs
        dispatcher.run_once()
    # Then only created was delivered; finished failed as the target is gone
    assert [json.loads(r.body)["event"] for r in hook.received] == ["job.created"]
    rows = {r.event: r for r in Outbox(notifying.index).rows(job_id=job)}
    assert rows["job.finished"].state == "failed"
    assert rows["job.finished"].last_error == "target removed"


def test_https_goes_to_the_checked_address_with_the_hosts_certificate(
        notifying: Notifying, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    with receiver(tls=(cert, key)) as hook:
        # Given an HTTPS receiver for the name localhost, its certificate trusted
        job = notifying.job("job-s", items=1)
        notifying.targets.add(hook.url, tenant="a", job_id=job, events="created")
        trusted = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(verify=trusted, timeout=10) as http:
            dispatcher = Dispatcher(notifying.settings, notifying.index, http=http)
            # When the event is sent (to the address checked, not the name)
            done = dispatcher.run_once()
    # Then TLS checked the certificate against the name, and the receiver saw the name
    assert done.delivered == 1, Outbox(notifying.index).log(job_id=job)
    assert hook.received[0].headers["Host"] == hook.url.split("/")[2]


def test_only_the_start_of_a_failed_answer_is_read(notifying: Notifying) -> None:
    with receiver(script=[500], answer=b"x" * 5_000_000) as hook:
        # Given a receiver that fails with a 5 MB answer
        job = notifying.job("job-big", items=1)
        notifying.targets.add(hook.url, tenant="a", job_id=job, events="created")
        # When the event is sent
        notifying.dispatcher().run_once()
    # Then the log keeps the status and the answer's first 200 bytes
    (attempt,) = Outbox(notifying.index).log(job_id=job)
    assert attempt.status == 500 and attempt.error == "HTTP 500: " + "x" * 200


def test_a_receivers_retry_after_is_waited_for(notifying: Notifying) -> None:
    with receiver(script=[429]) as hook:
        # Given a receiver that answers 429 with Retry-After: 120 (more than the backoff)
        job = notifying.job("job-429", items=1)
        notifying.targets.add(hook.url, tenant="a", job_id=job, events="created")
        dispatcher = notifying.dispatcher()
        dispatcher.run_once()
        # When the dispatcher runs after the backoff (5 s), then after 120 s
        notifying.clock.advance(60)
        early = dispatcher.run_once()
        notifying.clock.advance(60)
        late = dispatcher.run_once()
    # Then it waited for the receiver's 120 s
    assert (early.delivered, late.delivered) == (0, 1)
    assert [r.status for r in hook.received] == [429, 200]


def test_two_dispatchers_at_once_send_each_event_once(notifying: Notifying) -> None:
    with receiver() as hook:
        # Given a tenant's webhook and 20 jobs of the tenant
        notifying.targets.add(hook.url, tenant="a", events="created")
        jobs = [notifying.job(f"job-{n:02d}", items=1) for n in range(20)]
        first, second = notifying.dispatcher(), notifying.dispatcher()
        # When two dispatchers notice and send at the same time
        threads = [threading.Thread(target=d.run_once) for d in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        first.run_once()  # whatever the other had not claimed yet
    # Then each job's created event arrived once
    delivered = [json.loads(r.body)["job"]["job"] for r in hook.received]
    assert sorted(delivered) == jobs
    assert len({r.headers["X-Gpufleet-Delivery"] for r in hook.received}) == 20
