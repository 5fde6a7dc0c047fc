"""The executor seam: Outcome's wire form and lost constructor, the protocol's defaults
(ready, logs), and RayExecutor's shared waiting on a real (embedded) Ray: log chunks, then
outcomes, from streaming tasks."""

import json
import os

import pytest
import ray

from engine.gpu_telemetry import Reading, Telemetry
from orchestrator.executors.base import Executor, LogChunk, Outcome, RayExecutor, Slot, stream
from tests.engine.test_result import make

SLOT = Slot("gpu0", "box", "0", "0")


def sampled() -> Telemetry:
    tel = Telemetry(1.0, done_s=1.5)
    tel.add(0.01, Reading(gpu_pct=3, mem_used_bytes=1 << 30, throttle=0x1, pids=[]), 0)
    tel.add(1.01, Reading(gpu_pct=99, power_w=650.2, sm_mhz=1980, temp_c=55), None)
    return tel


def test_lost_outcome_names_the_slot() -> None:
    out = Outcome.lost(SLOT, "gone", elapsed_s=2.0)
    assert (out.outcome, out.error_kind, out.error) == ("lost", "lost", "gone")
    assert (out.host, out.gpu, out.elapsed_s) == ("box", "0", 2.0)


@pytest.mark.parametrize("out", [
    Outcome("failed", "box", "0", error="boom", error_kind="engine", log_tail="x"),
    Outcome("succeeded", "box", "0", result=make(env={"gpu": {"name": "H200"}})),
    Outcome("timeout", "box", "0", error="timed out", error_kind="timeout",
            telemetry=sampled()),
])
def test_outcome_round_trips_its_wire_form(out: Outcome) -> None:
    wire = json.loads(json.dumps(out.to_dict()))
    if out.result:  # the record, derived figures included
        assert wire["result"] == out.result.to_dict()
    if out.telemetry:  # as columns
        assert wire["telemetry"]["gpu_pct"] == [3, 99] and wire["telemetry"]["done_s"] == 1.5
    assert Outcome.from_dict(wire) == out


def test_an_outcome_from_a_runner_without_telemetry_reads_as_none() -> None:
    wire = Outcome("failed", "box", "0", error="x").to_dict()
    del wire["telemetry"]  # an older runner on a host not yet provisioned again
    assert Outcome.from_dict(wire).telemetry is None


def test_every_slot_is_ready_by_default() -> None:
    class Bare(Executor):
        slots = [SLOT]

    assert Bare().ready(SLOT) and Bare().logs() == []


def _run(jobs: list[str]):
    """A job process as the runner gives it: a chunk of output per job, then Outcomes."""
    for i, _ in enumerate(jobs):
        yield LogChunk(i, f"job {i}\n", skipped=i)
    if "crash" in jobs:
        os._exit(1)  # the worker dies under the job
    if "short" in jobs:  # fewer outcomes than jobs
        return []
    return [Outcome("succeeded", "here", "0", make(), elapsed_s=1.0) for _ in jobs]


@ray.remote(num_cpus=0, max_retries=0, num_returns="streaming")
def _answer(jobs: list[str]):
    yield from stream(_run(jobs), host="box")


class _Fake(RayExecutor):
    lost_error = "fake worker lost"

    def __init__(self) -> None:
        super().__init__()
        self.slots = [SLOT, Slot("gpu1", "box", "1", "1")]
        self.seen: list[tuple[str, str]] = []

    def submit(self, slot: Slot, jobs: list[str], timeout_s: float):
        return self._started(slot, jobs, _answer.remote(jobs))

    def _finished(self, slot: Slot, outs: list[Outcome]) -> None:
        self.seen.append((slot.name, [o.outcome for o in outs]))


@pytest.fixture(scope="module")
def embedded_ray():
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
             configure_logging=False, object_store_memory=128 * 1024 * 1024)
    yield
    ray.shutdown()


def test_ray_executor_waits_and_turns_a_dead_worker_into_lost(embedded_ray) -> None:
    ex = _Fake()
    ok = ex.submit(ex.slots[0], ["{}", "{}"], 60)
    crash = ex.submit(ex.slots[1], ["{}", "crash", "{}"], 60)
    short = ex.submit(ex.slots[1], ["short"], 60)
    assert ex.wait([], timeout_s=0) == []
    done: dict = {}
    for _ in range(120):
        done.update(ex.wait([h for h in (ok, crash, short) if h not in done], timeout_s=0.5))
        if len(done) == 3:
            break
    assert done[ok] == [Outcome("succeeded", "box", "0", make(), elapsed_s=1.0)] * 2
    # The worker died under the task: every job of it is lost.
    assert [(o.outcome, o.host, o.gpu) for o in done[crash]] == [("lost", "box", "1")] * 3
    assert all(o.error.startswith("fake worker lost: ") for o in done[crash])
    shorted, (short,) = short, done[short]
    assert (short.outcome, short.error) == ("lost", "the worker answered 0 outcome(s) for 1 "
                                                     "job(s)")
    assert sorted(ex.seen) == [("gpu0", ["succeeded"] * 2), ("gpu1", ["lost"]),
                               ("gpu1", ["lost"] * 3)]
    assert not ex._running
    chunks = ex.logs()
    assert [c for h, c in chunks if h is ok] == [LogChunk(0, "job 0\n"),
                                                  LogChunk(1, "job 1\n", 1)]
    assert [c.text for h, c in chunks if h is shorted] == ["job 0\n"]
    assert ex.logs() == []  # taken
