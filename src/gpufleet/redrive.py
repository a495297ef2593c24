"""Redrive: dead letters back on their queue, and their failed items pending again.

A dead-lettered task's items were marked failed, so its job could end. Sending the
task back without reopening them would leave the job reading ``failed`` (or
``partial``) while it runs again; reopened, the job is running again until the
items have their new outcome.
"""

from __future__ import annotations

from collections import defaultdict

from gpufleet.domain import Task
from gpufleet.index import Index
from gpufleet.queue import TaskQueue


def redrive(queue: TaskQueue, index: Index) -> int:
    """Move every dead letter of the queue back to it; returns how many."""
    reopened: dict[str, list[str]] = defaultdict(list)
    for letter in queue.dead_letters():
        try:
            task = Task.decode(letter.body)
        except (ValueError, KeyError, TypeError):
            continue  # a message no worker can read: it is dead-lettered again at once
        reopened[task.job] += task.keys
    # Reopened first: once back on the queue, a worker may record their outcomes at once.
    for job, keys in reopened.items():
        index.reopen(job, keys)
    return queue.redrive()
