"""db.read.telemetry: real job processes (a tiny nano job, and one that fails) run through
run_job_process with an injected GPU reader; their telemetry crosses the wire form, the store
writes it with the attempt and the reader reads it back, with the result's phases, summary
and mark; the mark reaches the results frame, its summary and `orchestrate results`; on SQLite
and PostgreSQL."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from db.models import AttemptTelemetry, Job
from db.read.results import results_frame, summarize
from db.read.telemetry import (
    ENGINE_START,
    GENERATE,
    MARK_COLUMN,
    attempt_gpu,
    gpu_mark,
    phases,
    telemetry_of,
)
from db.store import Store
from engine.gpu_telemetry import Reading, Telemetry
from engine.job import BenchJob, ModelRef
from engine.workload import WorkloadSpec
from orchestrator.cli.reports import results_report
from orchestrator.executors.base import Outcome
from orchestrator.executors.process import run_job_process
from tests.db.read.recorded import record, sweep_text
from tests.db.test_store import _job
from tests.engine.test_result import make

SPEC = WorkloadSpec(num_seqs=5, input_len=(4, 24), output_len=(2, 6), seed=3)
NANO = BenchJob("nano", "nano", ModelRef(arch="tiny"), SPEC, max_num_seqs=2,
                options={"block_size": 8})
BAD = BenchJob("nano", "bad", ModelRef(arch="tiny"), WorkloadSpec(name="nope"), 2)


def children() -> list[int]:
    """The processes this one started (the job process, while it runs)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == os.getpid():
            out.append(int(stat.parent.name))
    return out


class Counting:
    """An injected GPU reader: the n-th read says n% busy, sw_power_cap throttling (with the
    idle bit, which alone is none), and on the GPU the job's process and this test's."""

    def __init__(self):
        self.n = 0

    def __call__(self) -> Reading:
        self.n += 1
        return Reading(gpu_pct=self.n % 100, mem_used_bytes=self.n << 20, power_w=100.0 + self.n,
                       sm_mhz=1500, temp_c=40 + self.n % 10, throttle=0x4 | 0x1,
                       pids=[*children(), os.getpid()])


@pytest.fixture(scope="module")
def ran(tiny_cache) -> dict[str, Outcome]:
    """The two jobs run once, each in a job process of its own, on GPU "0" (this machine has
    none: the engine runs on CPU, the reader stands in for NVML). Their Outcomes as they come
    back over the wire (JSON)."""
    old = os.environ.get("BENCHSWEEP_CACHE")
    os.environ["BENCHSWEEP_CACHE"] = str(tiny_cache)
    try:
        outs = {}
        for name, job in (("ok", NANO), ("bad", BAD)):
            (out,) = run_job_process([job.to_json()], gpu="0", cuda_visible_devices="0",
                                     timeout_s=300, threads=1, gpu_read=Counting())
            outs[name] = Outcome.from_dict(json.loads(json.dumps(out.to_dict())))
    finally:
        if old is None:
            del os.environ["BENCHSWEEP_CACHE"]
        else:
            os.environ["BENCHSWEEP_CACHE"] = old
    return outs


def test_a_real_job_process_carries_its_samples_to_the_wire(ran) -> None:
    ok, bad = ran["ok"], ran["bad"]
    assert ok.outcome == "succeeded", ok.error
    assert (bad.outcome, bad.error_kind) == ("failed", "bad_input")
    for out in (ok, bad):
        tel = out.telemetry
        # About a sample a second from the process's start to its end.
        assert len(tel) >= 1 + int(out.elapsed_s) - 1 and tel.t[0] < 0.5
        assert tel.t == sorted(tel.t) and tel.t[-1] <= out.elapsed_s + 1
        assert tel.gpu_pct == list(range(1, len(tel) + 1))  # every read, in order
        assert set(tel.others) == {1}  # this test's process; the job's own never counts
        # The result (or error) line came within the process's time, after the imports.
        assert 0 < tel.done_s <= out.elapsed_s
    assert ok.result.elapsed_s < ok.telemetry.done_s and len(ok.telemetry) >= 2


def test_the_store_keeps_the_telemetry_of_every_attempt(ran, db_url) -> None:
    store = Store(db_url)
    try:
        sweep = store.upsert_sweep("t", "name: t", None)
        store.add_jobs(sweep, [_job("a", 0), _job("b", 1)])
        with store.session() as s:
            a, b = (s.scalar(select(Job.id).where(Job.key == k)) for k in "ab")
        for job_id, out in ((a, ran["ok"]), (b, ran["bad"])):
            attempt = store.start_attempt(job_id, "h", "0")
            store.finish_attempt(attempt, out.outcome, job_state="failed", error=out.error,
                                 result=out.result, telemetry=out.telemetry,
                                 elapsed_s=out.elapsed_s)
        nothing = store.start_attempt(b, "h", "cpu")  # a CPU slot's: none
        store.finish_attempt(nothing, "failed", job_state="failed")

        ok = attempt_gpu(store, a, 1)
        assert ok.telemetry == ran["ok"].telemetry and ok.result == ran["ok"].result
        (start, s0, s1), (gen, g0, g1) = ok.phases
        assert (start, gen) == (ENGINE_START, GENERATE)
        assert s1 == g0 and g1 == ok.telemetry.done_s
        assert g1 - g0 == pytest.approx(ok.result.elapsed_s)
        # Every read at the power cap (shown, not a mark), the idle bit aside; the test's
        # process was on the GPU beside the job's.
        if ok.summary is not None:  # a tiny generate may fall between two samples
            assert ok.mark == "shared GPU"
            assert ok.summary.throttle == ["sw_power_cap"] and ok.summary.shared
            assert ok.summary.slowed == []
        else:
            assert ok.mark == "shared GPU"

        failed = attempt_gpu(store, b, 1)
        assert failed.telemetry == ran["bad"].telemetry
        assert failed.result is None and failed.phases == [] and failed.mark == ""
        assert attempt_gpu(store, b, 2) is None
        assert set(telemetry_of(store, [nothing, *range(1, 10)])) == {1, 2}
        with store.session() as s:
            row = s.scalar(select(AttemptTelemetry).where(AttemptTelemetry.attempt_id == 1))
            assert row.samples == len(ran["ok"].telemetry)
            assert set(row.series) == {"t", "gpu_pct", "mem_used_mib", "power_w", "sm_mhz",
                                       "temp_c", "throttle", "others"}
    finally:
        store.close()


def generating(throttle: int = 0, others: int = 0, done_s: float = 10.0) -> Telemetry:
    """Ten seconds of samples, the timed generate the last four, sw_thermal (`throttle`)
    and other processes (`others`) in it only."""
    tel = Telemetry(1.0, done_s=done_s)
    for t in range(11):
        inside = t >= 7
        tel.add(float(t), Reading(gpu_pct=90, throttle=throttle if inside else 0x1),
                others=others if inside else 0)
    return tel


def test_the_mark_of_a_result() -> None:
    r = make(elapsed_s=3.0)
    assert gpu_mark(r, None) == "" and gpu_mark(r, generating()) == ""
    assert gpu_mark(r, generating(0x20 | 0x40)) == "throttled (sw_thermal, hw_thermal)"
    assert gpu_mark(r, generating(others=1)) == "shared GPU"
    # Throttling outside the timed generate is not the figure's.
    assert gpu_mark(make(elapsed_s=3.0), generating(0x20, done_s=5.0)) == ""
    before = make(elapsed_s=3.0)
    before.conditions.gpu_processes_before = [{"pid": 9, "used_bytes": None}]
    assert gpu_mark(before, None) == "shared GPU"
    assert gpu_mark(before, generating(0x20)) == "throttled (sw_thermal); shared GPU"
    # At its power limit a loaded card runs so in every repeat: not held against the figure.
    assert gpu_mark(r, generating(0x4)) == "" and gpu_mark(r, generating(0x4 | 0x8)) == \
        "throttled (hw_slowdown)"
    assert [p for p, *_ in phases(generating(), make(elapsed_s=3.0, load_s=2.0))] == [
        ENGINE_START, GENERATE]


def test_the_mark_reaches_the_results_and_their_report(db_url) -> None:
    store = Store(db_url)
    try:
        planned = record(store, sweep_text(repeats=2))
        marks = {("base", 0): generating(0x8), ("base", 1): None, ("fast", 0): generating(),
                 ("fast", 1): generating(others=2)}
        with store.session() as s:
            ids = {p.key: s.scalar(select(Job.id).where(Job.key == p.key)) for p in planned}
        for p in planned:
            attempt = store.start_attempt(ids[p.key], "h", "0")
            store.finish_attempt(attempt, "succeeded", job_state="succeeded",
                                 result=make(output_tokens=100, elapsed_s=3.0),
                                 telemetry=marks[(p.job.variant, p.job.repeat)])
        df = results_frame(store, "s")
        got = dict(zip(zip(df["variant"], df["repeat"], strict=True), df[MARK_COLUMN],
                       strict=True))
        assert got == {("base", 0): "throttled (hw_slowdown)", ("base", 1): "",
                       ("fast", 0): "", ("fast", 1): "shared GPU"}
        summary = summarize(df, "base").set_index("variant")
        assert summary.loc["base", MARK_COLUMN] == "1 of 2: throttled (hw_slowdown)"
        report = results_report("s", summary.reset_index(), "base", 0)
        column = next(c for c in report.columns if c.header == "GPU mark")
        assert [column.text(r) for r in report.rows] == ["1 of 2: throttled (hw_slowdown)",
                                                          "1 of 2: shared GPU"]
    finally:
        store.close()


def test_telemetry_stays_small() -> None:
    """Half an hour at one sample a second, as stored."""
    tel = Telemetry(1.0, done_s=1700.0)
    for t in range(1800):
        tel.add(t + 0.013 * t, Reading(87, 70_000 << 20, 612.37, 1980, 71, 0x4, [1, 2]), 0)
    started = time.monotonic()
    size = len(json.dumps(tel.to_dict()))
    assert size < 120_000, size
    assert time.monotonic() - started < 1
