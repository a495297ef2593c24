"""One suite every TaskQueue backend passes: leases, expiry, heartbeat, backoff, dead letters.

Tests talk to the TaskQueue Protocol only. The ``backend`` fixture says how to
open a queue and how to let time pass: with a fake clock where the backend
takes one (time jumps, nothing sleeps), by moving the server's own notion of
time for Redis and moto's SQS (see ``backends.py``), otherwise with short real
timeouts. To add a backend, add a param to ``backend`` that starts its server.

Where a backend promises less, a flag on ``Backend`` says so and the suite
checks the weaker promise: SQS cannot refuse a stale receipt handle from
another process (``exact_leases``), and counts a task in its nack backoff as in
flight, because it hides it with ChangeMessageVisibility (``backoff_in_flight``).
"""

from __future__ import annotations

import itertools
import json
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from gpufleet.errors import QueueUnavailable, TaskTooLarge
from gpufleet.queue import Backoff, Lease, QueueDepth, TaskQueue, nack, open_queue
from gpufleet.queue.batch import ack_many
from gpufleet.queue.sqlite import SqliteQueue
from gpufleet.queue.sqs import ensure_queue_pair
from tests.conformance.backends import InProcessMoto, RedisClock, fresh_name
from tests.servers import RedisServer


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Clock(Protocol):
    def __call__(self) -> float: ...

    def advance(self, seconds: float) -> None: ...


@dataclass
class Backend:
    """How the suite reaches one backend."""

    url: str  # what a separate process passes to open_queue
    opener: Callable[[str], TaskQueue]  # queue name -> queue, on the test's clock
    clock: Clock | None  # None: the backend runs on real time
    lease_s: float  # a visibility timeout that suits that clock
    fifo: bool = False  # receive returns tasks oldest first
    exact_leases: bool = True  # a stale lease is refused, whoever settled the task since
    backoff_in_flight: bool = False  # depth() counts a task in its nack backoff as in flight
    unit_s: float = 1.0  # the model-based test's unit of time
    examples: int = 150  # how many random runs the model-based test makes
    opened: list[TaskQueue] = field(default_factory=list)

    def open(self, name: str = "tasks") -> TaskQueue:
        queue = self.opener(name)
        self.opened.append(queue)
        return queue

    def wait(self, seconds: float) -> None:
        if self.clock is not None:
            self.clock.advance(seconds)
        else:
            time.sleep(seconds)


@pytest.fixture(params=["sqlite", "sqlite-realtime", "redis", "sqs"])
def backend(request: pytest.FixtureRequest, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    path = str(tmp_path / "queues" / "queue.db")
    url = f"sqlite://{path}"
    closers: list[Callable[[], None]] = []
    if request.param == "sqlite":
        clock = FakeClock()
        b = Backend(url, lambda name: SqliteQueue(path, name=name, clock=clock), clock, 30.0, True)
    elif request.param == "sqlite-realtime":  # without a fake clock: the real-time path works
        b = Backend(url, lambda name: open_queue(url, name=name), None, 1.0, True)
    elif request.param == "redis":  # one server per session; a namespace per test
        server: RedisServer = request.getfixturevalue("redis_server")
        namespace = fresh_name("test-")
        url = f"{server.url}?namespace={namespace}"
        redis_clock = RedisClock(server.url, namespace)
        closers.append(redis_clock.close)
        b = Backend(url, lambda name: open_queue(url, name=name), redis_clock, 30.0,
                    unit_s=10.0, examples=150)
    else:  # SQS on moto over HTTP; a queue family per test, with a redrive policy that
        # never fires here (test_sqs_redrive_policy_dead_letters_a_task_nobody_settles does)
        moto: InProcessMoto = request.getfixturevalue("in_process_moto")
        for name, value in moto.env(str(tmp_path)).items():
            monkeypatch.setenv(name, value)
        url = f"sqs://{fresh_name('test-')}"
        ensure_queue_pair(url, max_receives=1000)
        b = Backend(url, lambda name: open_queue(url, name=name), moto.clock, 30.0,
                    exact_leases=False, backoff_in_flight=True, unit_s=10.0, examples=25)
    yield b
    for queue in b.opened:
        queue.close()
    for close in closers:
        close()


@pytest.fixture
def queue(backend: Backend) -> TaskQueue:
    return backend.open("tasks")


def receive_all(queue: TaskQueue, lease_s: float, max_tasks: int = 100) -> list[Lease]:
    return queue.receive(max_tasks, visibility_timeout_s=lease_s)


# -- leases ----------------------------------------------------------------------------


def test_enqueue_receive_ack(backend: Backend, queue: TaskQueue) -> None:
    # Given two tasks
    queue.enqueue(["a", "b"])
    # When they are received
    leases = receive_all(queue, backend.lease_s)
    # Then both come once, first delivery, each with its own token
    assert sorted(lease.body for lease in leases) == ["a", "b"]
    assert [lease.receives for lease in leases] == [1, 1]
    assert len({lease.token for lease in leases}) == 2
    # When they are acked, then they are gone, and a second ack is refused
    assert all(queue.ack(lease) for lease in leases)
    assert not queue.ack(leases[0])
    assert queue.depth() == QueueDepth(queued=0, in_flight=0, dead=0)
    assert receive_all(queue, backend.lease_s) == []


def test_ack_many_acks_each_lease_it_holds(backend: Backend, queue: TaskQueue) -> None:
    # Given 25 received tasks, one of them released since, and one lease of another queue
    queue.enqueue([f"t{i}" for i in range(25)])
    leases = receive_all(queue, backend.lease_s)
    assert queue.release(leases[3])
    other = backend.open("other")
    other.enqueue(["elsewhere"])
    foreign = receive_all(other, backend.lease_s)
    # When they are acked together (one request per batch where the backend can)
    done = ack_many(queue, [*leases, *foreign])
    # Then each answer says whether that lease held, and only the released task is left
    assert done == [i != 3 for i in range(25)] + [False]
    (again,) = receive_all(queue, backend.lease_s)
    assert (again.body, again.receives) == ("t3", 2)
    assert other.depth() == QueueDepth(queued=0, in_flight=1, dead=0)


def test_tasks_come_out_oldest_first(backend: Backend, queue: TaskQueue) -> None:
    if not backend.fifo:
        pytest.skip("backend does not promise order")
    # Given tasks enqueued in order, in two batches
    queue.enqueue([f"t{i}" for i in range(5)])
    queue.enqueue([f"t{i}" for i in range(5, 10)])
    # When received a few at a time, then the order is kept
    bodies = [lease.body for _ in range(4) for lease in queue.receive(3, visibility_timeout_s=60)]
    assert bodies == [f"t{i}" for i in range(10)]


def test_a_received_task_is_invisible_to_another_consumer(backend: Backend) -> None:
    # Given one task and two consumers
    first, second = backend.open("tasks"), backend.open("tasks")
    first.enqueue(["only"])
    # When the first receives it
    (lease,) = receive_all(first, backend.lease_s)
    assert lease.body == "only"
    # Then the second gets nothing while the lease lasts
    assert receive_all(second, backend.lease_s) == []
    assert first.depth() == QueueDepth(queued=0, in_flight=1, dead=0)


def test_lease_expiry_redelivers_and_the_old_lease_is_lost(
    backend: Backend, queue: TaskQueue
) -> None:
    # Given a task received by a consumer that then stalls
    queue.enqueue(["slow"])
    (old,) = receive_all(queue, backend.lease_s)
    # When the lease runs out and another consumer receives the task
    backend.wait(backend.lease_s * 1.5)
    (new,) = receive_all(backend.open("tasks"), backend.lease_s)
    # Then it is the same task, second delivery, new token
    assert (new.id, new.body, new.receives) == (old.id, "slow", 2)
    assert new.token != old.token
    if backend.exact_leases:
        # And the stale lease can no longer settle it
        assert not queue.extend(old, visibility_timeout_s=backend.lease_s)
        assert not queue.ack(old)
        assert not queue.release(old)
        assert not queue.dead_letter(old, error="stale")
    # While the new holder can
    assert queue.ack(new)
    assert queue.depth() == QueueDepth(queued=0, in_flight=0, dead=0)


def test_heartbeat_keeps_a_task_invisible_past_its_first_timeout(
    backend: Backend, queue: TaskQueue
) -> None:
    # Given a received task
    queue.enqueue(["long"])
    (lease,) = receive_all(queue, backend.lease_s)
    # When the worker heartbeats halfway through and keeps working past the first timeout
    backend.wait(backend.lease_s * 0.5)
    assert queue.extend(lease, visibility_timeout_s=backend.lease_s)
    backend.wait(backend.lease_s * 0.7)
    # Then nobody else received it, and the worker's ack counts
    assert receive_all(queue, backend.lease_s) == []
    assert queue.ack(lease)


def test_release_with_delay_hides_the_task_until_due(backend: Backend, queue: TaskQueue) -> None:
    if not queue.supports_delay:
        pytest.skip("backend has no delayed delivery")
    # Given a received task
    queue.enqueue(["flaky"])
    (lease,) = receive_all(queue, backend.lease_s)
    # When it is nacked with a backoff
    assert queue.release(lease, delay_s=backend.lease_s, error="store down")
    # Then it stays hidden, counted as queued (SQS: in flight), until the backoff is over
    assert receive_all(queue, backend.lease_s) == []
    hidden = QueueDepth(0, 1, 0) if backend.backoff_in_flight else QueueDepth(1, 0, 0)
    assert queue.depth() == hidden
    assert not queue.ack(lease), "a released lease is no longer held"
    backend.wait(backend.lease_s * 1.2)
    (again,) = receive_all(queue, backend.lease_s)
    assert (again.body, again.receives) == ("flaky", 2)
    # When released with no delay (drain), then it is visible at once
    assert queue.release(again)
    (third,) = receive_all(queue, backend.lease_s)
    assert third.receives == 3


def test_enqueue_with_delay(backend: Backend, queue: TaskQueue) -> None:
    if not queue.supports_delay:
        pytest.skip("backend has no delayed delivery")
    # Given a task enqueued with a delay
    queue.enqueue(["later"], delay_s=backend.lease_s)
    # Then it is queued but not receivable until the delay has passed
    assert receive_all(queue, backend.lease_s) == []
    assert queue.depth().queued == 1
    backend.wait(backend.lease_s * 1.2)
    assert [lease.body for lease in receive_all(queue, backend.lease_s)] == ["later"]


# -- dead letters ----------------------------------------------------------------------


def fail_until_dead(backend: Backend, queue: TaskQueue, backoff: Backoff) -> Lease:
    """Receive the one task and nack it until it dies; return its last lease."""
    for attempt in range(1, backoff.max_receives + 1):
        (lease,) = receive_all(queue, backend.lease_s)
        assert lease.receives == attempt
        dead = nack(queue, lease, error=f"boom {attempt}", backoff=backoff)
        assert dead == (attempt == backoff.max_receives)
        backend.wait(backoff.ceiling_s(attempt) * 1.2)
    return lease


def test_nack_dead_letters_after_max_receives_with_the_last_error(
    backend: Backend, queue: TaskQueue
) -> None:
    backoff = Backoff(max_receives=3, base_s=backend.lease_s / 4, max_s=backend.lease_s)
    # Given a task that fails every time
    queue.enqueue(["poison"])
    # When it is nacked max_receives times
    last = fail_until_dead(backend, queue, backoff)
    # Then it is a dead letter with its last error, and no longer delivered
    (dead,) = queue.dead_letters()
    assert (dead.id, dead.body, dead.receives, dead.error) == (last.id, "poison", 3, "boom 3")
    assert receive_all(queue, backend.lease_s) == []
    assert queue.depth() == QueueDepth(queued=0, in_flight=0, dead=1)


def test_tasks_nacked_together_come_back_spread_out(
    backend: Backend, queue: TaskQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend.clock is None or not queue.supports_delay:
        pytest.skip("needs delayed delivery on a clock the test moves")
    monkeypatch.setattr("gpufleet.jitter.random", random.Random(11))  # the same draws each run
    backoff = Backoff(base_s=backend.lease_s, max_s=backend.lease_s)
    # Given ten tasks that failed together (their store went down, say)
    queue.enqueue([f"t{i}" for i in range(10)])
    for lease in receive_all(queue, backend.lease_s):
        nack(queue, lease, error="store down", backoff=backoff)
    # When three quarters of the backoff have passed, then some are back, not all
    backend.wait(backend.lease_s * 0.75)
    early = receive_all(queue, backend.lease_s)
    assert 0 < len(early) < 10
    # And by the end of it the rest are back too: none waits longer than the backoff
    backend.wait(backend.lease_s * 0.3)
    assert len(early) + len(receive_all(queue, backend.lease_s)) == 10


def test_redrive_puts_dead_letters_back(backend: Backend, queue: TaskQueue) -> None:
    backoff = Backoff(max_receives=2, base_s=backend.lease_s / 4, max_s=backend.lease_s)
    # Given a dead letter
    queue.enqueue(["poison"])
    fail_until_dead(backend, queue, backoff)
    # When the queue is redriven
    assert queue.redrive() == 1
    # Then it is received again as if new, and can be acked
    assert queue.dead_letters() == []
    assert queue.depth() == QueueDepth(queued=1, in_flight=0, dead=0)
    (lease,) = receive_all(queue, backend.lease_s)
    assert (lease.body, lease.receives) == ("poison", 1)
    assert queue.ack(lease)
    assert queue.redrive() == 0


def test_depth_counts_queued_in_flight_and_dead(backend: Backend, queue: TaskQueue) -> None:
    # Given five tasks, two of them delayed
    queue.enqueue(["a", "b", "c"])
    queue.enqueue(["d", "e"], delay_s=backend.lease_s * 10)
    # When two are received
    first, _ = queue.receive(2, visibility_timeout_s=backend.lease_s)
    assert queue.depth() == QueueDepth(queued=3, in_flight=2, dead=0)
    # When one is dead-lettered
    assert queue.dead_letter(first, error="bad")
    assert queue.depth() == QueueDepth(queued=3, in_flight=1, dead=1)
    # When the other's lease runs out, then it counts as queued again
    backend.wait(backend.lease_s * 1.5)
    assert queue.depth() == QueueDepth(queued=4, in_flight=0, dead=1)


def test_named_queues_are_isolated(backend: Backend) -> None:
    # Given two queues on the same backend, with work only on alpha
    alpha, beta = backend.open("alpha"), backend.open("beta")
    alpha.enqueue(["a1", "a2"])
    (lease, other) = alpha.receive(2, visibility_timeout_s=backend.lease_s)
    assert alpha.dead_letter(lease, error="bad")
    # Then beta sees none of it and cannot settle alpha's leases
    assert receive_all(beta, backend.lease_s) == []
    assert beta.depth() == QueueDepth(queued=0, in_flight=0, dead=0)
    assert beta.dead_letters() == []
    assert beta.redrive() == 0
    assert not beta.ack(other)
    assert alpha.depth() == QueueDepth(queued=0, in_flight=1, dead=1)


def test_oversize_message_is_refused(backend: Backend, queue: TaskQueue) -> None:
    limit = queue.max_message_bytes
    # Given a batch with one body over the limit (in bytes, not characters)
    too_big = "é" * (limit // 2 + 1)
    # When enqueued, then the whole batch is refused with a clear error
    with pytest.raises(TaskTooLarge, match="max_message_bytes"):
        queue.enqueue(["fine", too_big])
    assert queue.depth() == QueueDepth(queued=0, in_flight=0, dead=0)
    # While a body exactly at the limit is accepted
    queue.enqueue(["x" * limit])
    (lease,) = receive_all(queue, backend.lease_s)
    assert len(lease.body) == limit


# -- concurrency -----------------------------------------------------------------------


def test_heartbeat_thread_and_main_thread_share_one_queue(
    backend: Backend, queue: TaskQueue
) -> None:
    # Given 300 tasks and a heartbeat thread extending whatever the main thread holds
    queue.enqueue([str(i) for i in range(300)])
    held: list[Lease] = []
    guard, stop = threading.Lock(), threading.Event()
    errors: list[BaseException] = []

    def heartbeat() -> None:
        try:
            while not stop.is_set():
                with guard:
                    leases = list(held)
                for lease in leases:
                    queue.extend(lease, visibility_timeout_s=backend.lease_s)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=heartbeat)
    thread.start()
    # When the main thread receives and acks everything meanwhile
    acked = 0
    try:
        while leases := queue.receive(10, visibility_timeout_s=backend.lease_s):
            with guard:
                held[:] = leases
            acked += sum(queue.ack(lease) for lease in leases)
    finally:
        stop.set()
        thread.join()
    # Then nothing failed and every task was acked once
    assert errors == []
    assert acked == 300
    assert queue.depth() == QueueDepth(queued=0, in_flight=0, dead=0)


CONSUMER = """
import json, random, sys, time
from gpufleet.queue import open_queue

url, name, out = sys.argv[1:4]
queue = open_queue(url, name=name)
records, deadline = [], time.monotonic() + 120
while time.monotonic() < deadline:
    leases = queue.receive(8, visibility_timeout_s=120)
    got = time.monotonic()
    if not leases:
        depth = queue.depth()
        if depth.queued == depth.in_flight == 0:
            break
        time.sleep(0.002)
        continue
    for lease in leases:
        # Give back about one first delivery in ten, so tasks move between consumers.
        op = "release" if lease.receives == 1 and random.random() < 0.1 else "ack"
        done = time.monotonic()
        ok = queue.release(lease) if op == "release" else queue.ack(lease)
        records.append([lease.id, lease.body, lease.token, got, done, op, ok])
queue.close()
with open(out, "w") as f:
    json.dump(records, f)
"""


def run_processes(args: list[list[str]]) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-W", "error", "-c", *a], stderr=subprocess.PIPE, text=True
        )
        for a in args
    ]
    outcomes = [(proc.communicate(timeout=180)[1], proc.returncode) for proc in procs]
    for stderr, returncode in outcomes:
        assert returncode == 0, stderr


def test_two_consumer_processes_drain_every_task_exactly_once(
    backend: Backend, queue: TaskQueue, tmp_path: Path
) -> None:
    # Given 2000 tasks
    bodies = [json.dumps({"n": i}) for i in range(2000)]
    queue.enqueue(bodies)
    # When two consumer processes drain the queue, giving some tasks back
    outs = [str(tmp_path / f"consumer{k}.json") for k in range(2)]
    run_processes([[CONSUMER, backend.url, "tasks", out] for out in outs])
    records = [r for out in outs for r in json.loads(Path(out).read_text())]
    # Then every settle succeeded, every token was fresh
    assert all(ok for *_, ok in records)
    assert len({token for _, _, token, *_ in records}) == len(records)
    # And every task was acked exactly once overall, nothing lost
    acked = sorted(body for _, body, _, _, _, op, _ in records if op == "ack")
    assert acked == sorted(bodies)
    assert queue.depth() == QueueDepth(queued=0, in_flight=0, dead=0)
    # And no task was ever held by both at the same time
    records.sort(key=lambda r: (r[0], r[3]))
    for task_id, group in itertools.groupby(records, key=lambda r: r[0]):
        spans = [(got, done) for _, _, _, got, done, _, _ in group]
        for (_, done), (got, _) in itertools.pairwise(spans):
            assert got >= done, f"task {task_id} was leased twice at once"


OPENER = """
import sys, time
from gpufleet.queue import open_queue

url, name, start_at, k = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
time.sleep(max(0.0, start_at - time.time()))
queue = open_queue(url, name=name)
for i in range(50):
    queue.enqueue([f"{k}-{i}"])
queue.close()
"""


def test_several_processes_open_a_fresh_queue_at_once(backend: Backend, tmp_path: Path) -> None:
    # Given four processes that open the same new queue at the same moment and enqueue
    start_at = str(time.time() + 1.0)
    run_processes([[OPENER, backend.url, "fresh", start_at, str(k)] for k in range(4)])
    # Then none failed and every task is there
    assert backend.open("fresh").depth() == QueueDepth(queued=200, in_flight=0, dead=0)


# -- a model-based test: random operation sequences against an in-memory reference ---------


@dataclass
class ModelTask:
    seq: int  # enqueue order
    visible_at: float
    receives: int = 0
    token: str | None = None  # the token of the last delivery, until released
    backoff: bool = False  # hidden by a release with a delay (SQS counts it as in flight)


names = itertools.count()


class QueueMachine(RuleBasedStateMachine):
    """Consumers receive, settle, heartbeat and crash while time jumps; the model must agree.

    Durations are drawn in units of ``backend.unit_s`` seconds. On a backend
    without exact leases (SQS), a consumer whose lease the model knows to be
    stale (someone else received the task since, or its time ran out) drops it
    unsettled, like a crash: what SQS does with a stale receipt handle is not
    the queue's promise (see gpufleet.queue.sqs).
    """

    backend: ClassVar[Backend]  # set by a subclass per run: hypothesis builds machines itself

    def __init__(self) -> None:
        super().__init__()
        backend = self.backend
        assert backend.clock is not None
        self.clock = backend.clock
        self.unit = backend.unit_s
        # No jitter: the model must know when a nacked task is due again.
        self.backoff = Backoff(max_receives=2, base_s=2.0 * self.unit, max_s=10.0 * self.unit,
                               jitter=False)
        self.queue = backend.opener(f"machine-{next(names)}")
        self.fifo = backend.fifo
        self.tasks: dict[str, ModelTask] = {}  # body -> task, for every task in the queue
        self.dead: dict[str, tuple[ModelTask, str]] = {}
        self.acked: set[str] = set()
        self.enqueued = 0
        self.held: list[tuple[int, Lease]] = []  # (consumer, lease) as each consumer sees it
        self.tokens: set[str] = set()

    def live(self, lease: Lease) -> bool:
        """The queue still honours this lease: nobody received the task since."""
        task = self.tasks.get(lease.body)
        return task is not None and task.token == lease.token

    def pick(self, index: int, *, keep: bool = False) -> Lease | None:
        """A held lease; None when an inexact backend's consumer drops a stale one instead."""
        i = index % len(self.held)
        _, lease = self.held[i]
        stale = not self.live(lease) or self.tasks[lease.body].visible_at <= self.clock()
        if not keep or (stale and not self.backend.exact_leases):
            self.held.pop(i)
        return None if stale and not self.backend.exact_leases else lease

    @rule(n=st.integers(1, 3), delay=st.sampled_from([0.0, 0.0, 7.0]))
    def enqueue(self, n: int, delay: float) -> None:
        delay_s = delay * self.unit
        bodies = [f"task-{self.enqueued + i}" for i in range(n)]
        self.queue.enqueue(bodies, delay_s=delay_s)
        for body in bodies:
            self.tasks[body] = ModelTask(self.enqueued, self.clock() + delay_s)
            self.enqueued += 1

    @rule(consumer=st.integers(0, 2), n=st.integers(1, 4), timeout=st.sampled_from([10.0, 30.0]))
    def receive(self, consumer: int, n: int, timeout: float) -> None:
        now, timeout_s = self.clock(), timeout * self.unit
        visible = sorted(
            (t.visible_at, t.seq, body) for body, t in self.tasks.items() if t.visible_at <= now
        )
        # Leases other consumers hold and that have not run out: none may be handed out again.
        held = {
            lease.body
            for _, lease in self.held
            if self.live(lease) and self.tasks[lease.body].visible_at > now
        }
        leases = self.queue.receive(n, visibility_timeout_s=timeout_s)
        bodies = [lease.body for lease in leases]
        assert not held & set(bodies), "a task was leased to two consumers at once"
        assert len(bodies) == min(n, len(visible))
        if self.fifo:
            assert bodies == [body for *_, body in visible[:n]]
        assert set(bodies) <= {body for *_, body in visible}
        for lease in leases:
            task = self.tasks[lease.body]
            assert lease.receives == task.receives + 1
            assert lease.token not in self.tokens
            self.tokens.add(lease.token)
            task.receives, task.token, task.backoff = lease.receives, lease.token, False
            task.visible_at = now + timeout_s
            self.held.append((consumer, lease))

    @precondition(lambda self: self.held)
    @rule(index=st.integers(0, 20))
    def ack(self, index: int) -> None:
        if (lease := self.pick(index)) is None:
            return
        expected = self.live(lease)
        assert self.queue.ack(lease) == expected
        if expected:
            del self.tasks[lease.body]
            self.acked.add(lease.body)

    @precondition(lambda self: self.held)
    @rule(index=st.integers(0, 20), timeout=st.sampled_from([10.0, 30.0]))
    def extend(self, index: int, timeout: float) -> None:
        if (lease := self.pick(index, keep=True)) is None:
            return
        expected = self.live(lease)
        assert self.queue.extend(lease, visibility_timeout_s=timeout * self.unit) == expected
        if expected:
            self.tasks[lease.body].visible_at = self.clock() + timeout * self.unit

    @precondition(lambda self: self.held)
    @rule(index=st.integers(0, 20), delay=st.sampled_from([0.0, 3.0, 20.0]))
    def release(self, index: int, delay: float) -> None:
        if (lease := self.pick(index)) is None:
            return
        expected = self.live(lease)
        assert self.queue.release(lease, delay_s=delay * self.unit) == expected
        if expected:
            task = self.tasks[lease.body]
            task.token, task.visible_at = None, self.clock() + delay * self.unit
            task.backoff = delay > 0

    @precondition(lambda self: self.held)
    @rule(index=st.integers(0, 20))
    def nack(self, index: int) -> None:
        if (lease := self.pick(index)) is None:
            return
        expected = self.live(lease)
        dies = lease.receives >= self.backoff.max_receives
        assert nack(self.queue, lease, error=f"boom {lease.receives}", backoff=self.backoff) == dies
        if expected and dies:
            self.dead[lease.body] = (self.tasks.pop(lease.body), f"boom {lease.receives}")
        elif expected:
            task = self.tasks[lease.body]
            task.token, task.backoff = None, True
            task.visible_at = self.clock() + self.backoff.delay_s(lease.receives)

    @precondition(lambda self: self.held)
    @rule(index=st.integers(0, 20))
    def dead_letter(self, index: int) -> None:
        if (lease := self.pick(index)) is None:
            return
        expected = self.live(lease)
        assert self.queue.dead_letter(lease, error="bad") == expected
        if expected:
            self.dead[lease.body] = (self.tasks.pop(lease.body), "bad")

    @rule()
    def redrive(self) -> None:
        assert self.queue.redrive() == len(self.dead)
        for body, (task, _) in self.dead.items():
            self.tasks[body] = ModelTask(task.seq, self.clock())
        self.dead.clear()

    @rule(consumer=st.integers(0, 2))
    def crash(self, consumer: int) -> None:
        """The consumer dies: its leases are dropped without being settled."""
        self.held = [(c, lease) for c, lease in self.held if c != consumer]

    @rule(seconds=st.sampled_from([1.0, 5.0, 10.0, 30.0]))
    def advance_clock(self, seconds: float) -> None:
        self.clock.advance(seconds * self.unit)

    @invariant()
    def nothing_is_lost(self) -> None:
        places = [set(self.tasks), set(self.dead), self.acked]
        assert sum(map(len, places)) == self.enqueued == len(set().union(*places))

    @invariant()
    def depth_agrees(self) -> None:
        now = self.clock()
        in_flight = sum(
            t.visible_at > now and (t.token is not None
                                    or (t.backoff and self.backend.backoff_in_flight))
            for t in self.tasks.values())
        expected = QueueDepth(len(self.tasks) - in_flight, in_flight, len(self.dead))
        assert self.queue.depth() == expected

    @invariant()
    def dead_letters_agree(self) -> None:
        got = sorted((d.body, d.receives, d.error) for d in self.queue.dead_letters())
        assert got == sorted((b, t.receives, e) for b, (t, e) in self.dead.items())

    def teardown(self) -> None:
        try:
            # Every task still in the model is still in the queue: wait for every lease and
            # backoff to end, then they all come out.
            self.clock.advance(1000.0 * self.unit)
            leases = self.queue.receive(len(self.tasks) + 1, visibility_timeout_s=10.0 * self.unit)
            assert sorted(lease.body for lease in leases) == sorted(self.tasks)
        finally:
            self.queue.close()


def test_queue_agrees_with_a_reference_model(backend: Backend) -> None:
    if backend.clock is None:
        pytest.skip("the model-based test needs a controllable clock")

    class Machine(QueueMachine):
        pass

    Machine.backend = backend
    run_state_machine_as_test(
        Machine,
        settings=settings(max_examples=backend.examples, stateful_step_count=40, deadline=None,
                          database=None),
    )


# -- SQLite specifics ------------------------------------------------------------------


def test_sqlite_errors_become_queue_unavailable(tmp_path: Path) -> None:
    # Given a path where a database cannot be created
    (tmp_path / "taken").mkdir()
    # When it is opened, then the error is one QueueUnavailable line
    with pytest.raises(QueueUnavailable, match="taken") as info:
        SqliteQueue(str(tmp_path / "taken"), name="q")
    assert "\n" not in str(info.value)
    # And a closed queue raises QueueUnavailable too
    queue = SqliteQueue(str(tmp_path / "ok.db"), name="q")
    queue.close()
    with pytest.raises(QueueUnavailable):
        queue.depth()
