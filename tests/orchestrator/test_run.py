"""The coordinator's loop (orchestrator/run.py) with `reuse: repeats`, on a real SQLite
database and an executor whose tasks end at once with outcomes the test gives: the repeats
of a configuration leave the queue together as one task with the sum of their timeouts,
each job's attempt is settled from its own outcome and placed in the task's time, and a job
put back after its group runs alone."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from db.models import Attempt, Job, Sweep
from db.read.logs import attempt_log, dropped_note
from db.store import Store, as_utc
from orchestrator.executors.base import Executor, LogChunk, Outcome, Slot
from orchestrator.job_queue import JobQueue
from orchestrator.run import placed, run_sweep
from orchestrator.spec import parse
from tests.engine.test_result import make

SWEEP = textwrap.dedent("""\
    name: r
    model: {arch: tiny}
    workload: {num_seqs: 4, input_len: [8, 24], output_len: [2, 6]}
    variants:
      shared: {kind: nano, reuse: repeats}
      fresh: {kind: nano, options: {async_scheduling: false}}
    matrix: {max_num_seqs: [2]}
    repeats: 3
    timeout_s: 100
    retries: 1
    """)
SLOT = Slot("cpu0", "box", "cpu", "")


def ok(elapsed_s: float = 1.0) -> Outcome:
    return Outcome("succeeded", "box", "cpu", make(output_tokens=1), elapsed_s=elapsed_s)


class Scripted(Executor):
    """Tasks that end at once: answer(jobs, task number) gives their outcomes, after the
    output output(jobs, task number) gives."""

    def __init__(self, answer: Callable[[list[dict], int], list[Outcome]],
                 output: Callable[[list[dict], int], list[LogChunk]] = lambda *_: []):
        self.slots, self.answer, self.output = [SLOT], answer, output
        self.tasks: list[tuple[list[tuple[str, int]], float]] = []  # (variant, repeat)s
        self._outcomes: dict[int, list[Outcome]] = {}
        self._logs: list[tuple[int, LogChunk]] = []

    def ready(self, slot: Slot) -> bool:
        return True

    def submit(self, slot: Slot, jobs: list[str], timeout_s: float) -> int:
        specs = [json.loads(j) for j in jobs]
        handle = len(self.tasks)
        self.tasks.append(([(s["variant"], s["repeat"]) for s in specs], timeout_s))
        self._outcomes[handle] = self.answer(specs, handle)
        self._logs += [(handle, c) for c in self.output(specs, handle)]
        return handle

    def wait(self, handles: list[int], timeout_s: float) -> list[tuple[int, list[Outcome]]]:
        return [(h, self._outcomes.pop(h)) for h in handles]

    def logs(self) -> list[tuple[int, LogChunk]]:
        taken, self._logs = self._logs, []
        return taken

    def cancel(self, handle: int) -> None: ...

    def shutdown(self) -> None: ...


def attempts(store: Store) -> list[tuple]:
    with store.session() as s:
        return list(s.execute(select(Job.variant, Job.repeat, Attempt.outcome, Job.state,
                                     Attempt.started_at, Attempt.finished_at)
                              .join(Attempt, Attempt.job_id == Job.id).order_by(Attempt.id)))


def test_the_repeats_of_a_configuration_run_as_one_task(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    ex = Scripted(lambda specs, _: [ok(1.0 + i) for i in range(len(specs))])
    summary = run_sweep(parse(SWEEP), store, lambda: ex)
    assert summary.ok and summary.outcomes == {"succeeded": 6}
    assert ex.tasks == [([("shared", 0), ("shared", 1), ("shared", 2)], 300.0),
                        ([("fresh", 0)], 100.0), ([("fresh", 1)], 100.0),
                        ([("fresh", 2)], 100.0)]
    rows = attempts(store)
    assert {r.state for r in rows} == {"succeeded"}
    shared = [r for r in rows if r.variant == "shared"]
    # One after another in the time the task held the slot (placed(), below).
    for a, b in zip(shared, shared[1:], strict=False):
        assert as_utc(a.started_at) <= as_utc(a.finished_at) == as_utc(b.started_at)
    # Done: a rerun finds nothing to do, and starts no executor (no Ray, no host reached).
    def no_executor() -> Scripted:
        raise AssertionError("an executor was started for a sweep with nothing to run")

    assert run_sweep(parse(SWEEP), store, no_executor).skipped == 6
    store.close()


def test_jobs_a_group_did_not_finish_rerun_alone(tmp_path: Path) -> None:
    """The second repeat crashes the job process (a retry is left), the third is not reached:
    each goes back to the queue and runs in a task of its own."""
    def answer(specs: list[dict], task: int) -> list[Outcome]:
        if task == 0:
            return [ok(), Outcome("failed", "box", "cpu", error="killed by signal SIGKILL",
                                  error_kind="crash", elapsed_s=1.0),
                    Outcome("lost", "box", "cpu", error="not reached", error_kind="lost")]
        return [ok() for _ in specs]

    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    ex = Scripted(answer)
    summary = run_sweep(parse(SWEEP + "reuse: repeats\n"), store, lambda: ex)
    assert summary.ok
    assert summary.outcomes == {"succeeded": 6, "failed": 1, "lost": 1}
    groups = [jobs for jobs, _ in ex.tasks]
    assert groups[:2] == [[("shared", 0), ("shared", 1), ("shared", 2)],
                          [("fresh", 0), ("fresh", 1), ("fresh", 2)]]
    assert sorted(groups[2:]) == [[("shared", 1)], [("shared", 2)]]
    rows = attempts(store)
    assert [(r.repeat, r.outcome) for r in rows if r.variant == "shared"] == [
        (0, "succeeded"), (1, "failed"), (2, "lost"), (1, "succeeded"), (2, "succeeded")]
    lost = next(r for r in rows if r.outcome == "lost")
    assert as_utc(lost.started_at) == as_utc(lost.finished_at)  # it held no time
    store.close()


def test_output_goes_to_the_attempt_of_the_job_it_names(tmp_path: Path) -> None:
    """A shared process's output, each chunk to its job's attempt, in before the attempts
    end; a chunk naming no job of its task is dropped."""
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")

    def output(specs: list[dict], _: int) -> list[LogChunk]:
        return [LogChunk(i, f"{s['variant']} {s['repeat']}\n") for i, s in enumerate(specs)] \
            + [LogChunk(len(specs), "nobody's\n"), LogChunk(0, "more\n", skipped=2)]

    ex = Scripted(lambda specs, _: [ok() for _ in specs], output)
    assert run_sweep(parse(SWEEP), store, lambda: ex).ok
    with store.session() as s:
        jobs = s.execute(select(Job.id, Job.variant, Job.repeat)).all()
    logs = {(v, r): attempt_log(store, j).text for j, v, r in jobs}
    more = dropped_note(2) + "more\n"
    assert logs[("shared", 0)] == "shared 0\n" + more and logs[("shared", 2)] == "shared 2\n"
    assert logs[("fresh", 2)] == "fresh 2\n" + more
    store.close()


def test_a_group_is_of_jobs_recorded_alike(tmp_path: Path) -> None:
    """A repeat added after a variant was renamed: the same key's configuration, but a spec
    recorded under another name. The job process runs jobs recorded alike only."""
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    renamed = SWEEP.replace("shared:", "shared2:")
    run_sweep(parse(SWEEP.replace("repeats: 3", "repeats: 2")), store,
              lambda: Scripted(lambda specs, _: [Outcome("failed", "box", "cpu", error="x",
                                                 error_kind="bad_input")] * len(specs)))
    ex = Scripted(lambda specs, _: [ok() for _ in specs])
    assert run_sweep(parse(renamed), store, lambda: ex, rerun_failed=True).ok
    assert sorted(jobs for jobs, _ in ex.tasks if jobs[0][0] != "fresh") == [
        [("shared", 0), ("shared", 1)], [("shared2", 2)]]
    store.close()


def test_profile_is_the_sweep_files_at_each_submit(tmp_path: Path) -> None:
    """Jobs recorded without a profile and rerun (--force) with `profile: kernels` run with
    it: the sweep file as it reads now decides, like reuse; the keys stay."""
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    seen: list[str] = []

    def answer(specs: list[dict], _: int) -> list[Outcome]:
        seen.extend(s["profile"] for s in specs)
        return [ok() for _ in specs]

    run_sweep(parse(SWEEP.replace("repeats: 3", "repeats: 1")), store, lambda: Scripted(answer))
    assert seen == ["none", "none"]
    seen.clear()
    profiled = parse(SWEEP.replace("repeats: 3", "repeats: 1") + "profile: kernels\n")
    assert run_sweep(profiled, store, lambda: Scripted(answer)).skipped == 2 and seen == []
    run_sweep(profiled, store, lambda: Scripted(answer), force=True)
    assert seen == ["kernels", "kernels"]
    store.close()


def test_placed_tiles_the_time_held() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    end = t0 + timedelta(seconds=10)
    s = timedelta(seconds=1)
    assert placed(t0, end, [2.0, 3.0, 1.0]) == [(t0, t0 + 2 * s), (t0 + 2 * s, t0 + 5 * s),
                                               (t0 + 5 * s, end)]
    # Not reached: nothing held, at the end; the one cut short takes the rest.
    assert placed(t0, end, [2.0, 1.0, 0.0]) == [(t0, t0 + 2 * s), (t0 + 2 * s, end),
                                               (end, end)]
    # Clocks that disagree: never past the end.
    assert placed(t0, end, [8.0, 8.0]) == [(t0, t0 + 8 * s), (t0 + 8 * s, end)]
    assert placed(t0, end, [0.0, 0.0]) == [(t0, end), (end, end)]  # lost as a whole


class _J:
    def __init__(self, id: int, key: str):
        self.id, self.key = id, key


def test_queue_takes_a_group_once_and_a_job_put_back_alone() -> None:
    a0, b0, a1, c0, a2 = _J(1, "a"), _J(2, "b"), _J(3, "a"), _J(4, "c"), _J(5, "a")
    q = JobQueue([a0, b0, a1, c0, a2], lambda job: {"a": "A", "c": "C"}.get(job.key))
    assert len(q) == 5
    assert q.take() == [a0, a1, a2] and len(q) == 2
    q.put_back(a1)
    assert len(q) == 3
    assert q.take() == [b0]
    assert q.take() == [c0]  # a group of one; a1's old entry skipped
    assert q.take() == [a1] and len(q) == 0


def test_each_attempt_keeps_the_telemetry_its_outcome_carried(tmp_path: Path) -> None:
    """A failed attempt's samples are kept as a succeeded one's; an outcome without any
    (a CPU slot) leaves none."""
    from db.read.telemetry import telemetry_of
    from engine.gpu_telemetry import Reading, Telemetry

    def tel(pct: int) -> Telemetry:
        t = Telemetry(1.0, done_s=0.5)
        t.add(0.1, Reading(gpu_pct=pct), others=0)
        return t

    def answer(specs: list[dict], task: int) -> list[Outcome]:
        if task == 0:
            return [Outcome("failed", "box", "cpu", error="oom", error_kind="oom",
                            elapsed_s=1.0, telemetry=tel(7))]
        return [dataclasses.replace(ok(), telemetry=tel(task)) if task < 3 else ok()
                for _ in specs]

    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    one = textwrap.dedent("""\
        name: t
        model: {arch: tiny}
        workload: {num_seqs: 4, input_len: [8, 24], output_len: [2, 6]}
        variants: {a: {kind: nano}}
        matrix: {max_num_seqs: [2, 4, 8]}
        retries: 1
        """)
    assert run_sweep(parse(one), store, lambda: Scripted(answer)).ok
    with store.session() as s:
        rows = list(s.execute(select(Attempt.id, Attempt.outcome).order_by(Attempt.id)))
    got = telemetry_of(store, [r.id for r in rows])
    assert [(r.outcome, got[r.id].gpu_pct if r.id in got else None) for r in rows] == [
        ("failed", [7]), ("succeeded", [1]), ("succeeded", [2]), ("succeeded", None)]
    store.close()


def test_the_executor_starts_before_the_lease_is_taken(tmp_path: Path) -> None:
    """Starting an executor can take minutes (hosts reached one by one) while nothing
    heartbeats the lease: it starts first, then the sweep takes the lease."""
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    owners = []

    def start() -> Scripted:
        with store.session() as s:
            owners.append(s.scalar(select(Sweep.owner)))
        return Scripted(lambda specs, _: [ok() for _ in specs])

    assert run_sweep(parse(SWEEP), store, start).ok and owners == [None]
    store.close()
