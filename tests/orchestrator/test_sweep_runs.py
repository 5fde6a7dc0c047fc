"""orchestrator.run.run_sweep records each coordinator run and how it ended, with an executor
that answers in-process (the real ones are tested in tests/e2e)."""

from __future__ import annotations

import os
import signal

import pytest
from sqlalchemy import select

from db.models import SweepRun
from db.store import Store
from orchestrator.executors.base import Executor, Outcome, Slot
from orchestrator.run import owner_id, run_sweep
from orchestrator.spec import parse
from tests.db.read.recorded import sweep_text
from tests.engine.test_result import make


class Instant(Executor):
    """Every job succeeds as soon as it is waited for; `on_submit` runs as one is placed."""

    def __init__(self, on_submit=lambda: None) -> None:
        self.slots = [Slot("cpu0", "h", "cpu", "")]
        self.on_submit = on_submit
        self.cancelled: list[int] = []
        self._next = 0
        self._jobs: dict[int, int] = {}  # handle -> jobs submitted under it

    def ready(self, slot: Slot) -> bool:
        return True

    def submit(self, slot: Slot, jobs: list[str], timeout_s: float) -> int:
        self._next += 1
        self._jobs[self._next] = len(jobs)
        self.on_submit()
        return self._next

    def wait(self, handles: list, timeout_s: float) -> list[tuple[int, list[Outcome]]]:
        return [(h, [Outcome("succeeded", "h", "cpu", result=make(), elapsed_s=1.0)]
                     * self._jobs.pop(h)) for h in handles]

    def cancel(self, handle) -> None:
        self.cancelled.append(handle)

    def shutdown(self) -> None:
        pass


def _runs(store: Store) -> list[tuple]:
    with store.session() as s:
        return [(r.owner, r.ended, r.signal, r.ended_at is not None)
                for r in s.scalars(select(SweepRun).order_by(SweepRun.id))]


def test_each_run_ends_as_it_ended(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    spec = parse(sweep_text(repeats=2))

    def stop() -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # as `kill` would: the handler notes it

    summary = run_sweep(spec, store, lambda: Instant(on_submit=stop))
    assert summary.stopped_by == "SIGTERM"

    class Broken(Instant):
        def wait(self, handles, timeout_s):
            raise RuntimeError("the executor broke")

    with pytest.raises(RuntimeError, match="broke"):
        run_sweep(spec, store, Broken)
    summary = run_sweep(spec, store, Instant)
    assert summary.ok and summary.skipped + summary.outcomes["succeeded"] == 4
    assert summary.recovered == 1  # the attempt the broken run left running
    me = owner_id()
    assert _runs(store) == [(me, "stopped", "SIGTERM", True), (me, "error", None, True),
                            (me, "finished", None, True)]
