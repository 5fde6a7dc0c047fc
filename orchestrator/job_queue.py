"""The coordinator's queue of pending jobs, and which of them leave it together: the jobs of
one configuration whose variant reuses repeats (`reuse: repeats`, PlannedJob.group) run in
one job process on one engine start, taken all at once when the first of them is. A job
put back after an attempt (a retry, a job its group did not reach) runs alone."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

from db.models import Job


class JobQueue:
    def __init__(self, jobs: Iterable[Job], group_of: Callable[[Job], str | None]):
        """group_of: a job's group, None for a job that runs alone."""
        self._queue = deque(jobs)
        self._group_of = group_of
        self._waiting: dict[str, list[Job]] = {}  # each group's jobs not yet taken
        for job in self._queue:
            group = group_of(job)
            if group is not None:
                self._waiting.setdefault(group, []).append(job)
        # Jobs taken with their group while still further down the queue: the entry there
        # is skipped when it comes up (one entry each; a job put back gets a new one behind).
        self._taken: set[int] = set()

    def __len__(self) -> int:
        return len(self._queue) - len(self._taken)

    def take(self) -> list[Job]:
        """The next job, with the rest of its group: one job process's jobs, in the order
        they were queued."""
        job = self._queue.popleft()
        while job.id in self._taken:
            self._taken.discard(job.id)
            job = self._queue.popleft()
        group = self._group_of(job)
        mates = [m for m in self._waiting.pop(group, []) if m.id != job.id] if group else []
        self._taken.update(m.id for m in mates)
        return [job, *mates]

    def put_back(self, job: Job) -> None:
        self._queue.append(job)
