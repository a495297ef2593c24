"""What to do with a task as it is delivered: run it, split it, run it alone, or give up.

A task delivered again was either retried after a transient failure or was in
flight when its worker died (out of memory on a decompression bomb, a crash in
native code) or stalled past its lease. Nacking alone cannot catch the second
kind, so the receive count is enforced here, at delivery, on every backend:

- a task over ``GPUFLEET_MAX_RECEIVES`` deliveries is given up: its items fail
  with the reason, and the task goes to the dead-letter queue;
- a redelivered task runs alone, with nothing else in the worker, so whatever
  kills the worker takes no innocent neighbour from another task down with it
  (a task retried after a transient failure is simply retried, alone);
- a task that has failed to finish even alone is split into one task per item
  not yet recorded, each run alone: the rest of the task is done, and only the
  culprit keeps failing.

Split tasks carry the deliveries they have used up (``Task.attempts``), so an
item that kills every worker it meets ends ``failed`` after max_receives tries.
"""

from __future__ import annotations

from collections.abc import Collection
from enum import Enum

from gpufleet.domain import Task
from gpufleet.queue import Lease


class Verdict(Enum):
    RUN = "run"
    SPLIT = "split"
    ALONE = "alone"
    GIVE_UP = "give up"


def deliveries(task: Task, lease: Lease) -> int:
    return task.attempts + lease.receives


def judge(task: Task, lease: Lease, *, max_receives: int) -> Verdict:
    n = deliveries(task, lease)
    if n > max_receives:
        return Verdict.GIVE_UP
    if n == 1:
        return Verdict.RUN
    return Verdict.SPLIT if n > 2 and len(task.keys) > 1 else Verdict.ALONE


def give_up_reason(task: Task, lease: Lease) -> str:
    n = deliveries(task, lease) - 1
    what = "this item" if len(task.keys) == 1 else "this item's task"
    return f"the worker died or stalled on {what} {n} times"


def split(task: Task, lease: Lease, *, recorded: Collection[str]) -> list[Task]:
    """One task per item that has no outcome yet, carrying the deliveries used so far
    and the trace it belongs to."""
    used = deliveries(task, lease) - 1
    return [Task(task.job, (key,), task.input, task.output, attempts=used, trace=task.trace,
                 results=task.results)
            for key in task.keys if key not in recorded]
