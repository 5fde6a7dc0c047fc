from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from db.models import Attempt, Sweep
from db.read.sweeps import LOST_ATTEMPT
from db.read.timeline import ALL, attempt_bars, efficiency
from db.store import Store
from tests.engine.test_result import make

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def timed(store: Store, attempt_id: int, start_s: float, end_s: float | None) -> None:
    """Put an attempt written through the Store at chosen times after T0."""
    with store.session() as s:
        s.execute(update(Attempt).where(Attempt.id == attempt_id).values(
            started_at=T0 + timedelta(seconds=start_s),
            finished_at=None if end_s is None else T0 + timedelta(seconds=end_s)))


def fill(store: Store) -> None:
    """A sweep of four jobs on one host's two GPUs: vllm succeeded (100 s held, 60 s start,
    6 s generate), nano succeeded (20 s held, 5 + 5 s), nano failed once then ran again,
    and one vllm job still running."""
    sid = store.upsert_sweep("s", "name: s", "vllm")
    store.add_jobs(sid, [
        dict(key=f"k{i}", ordinal=i, variant=v, engine=v, options={}, model="m",
             workload="standard", workload_fingerprint="fp", max_num_seqs=4,
             gpu_memory_utilization=0.9, repeat=0, spec="{}")
        for i, v in enumerate(["vllm", "nano", "nano", "vllm"])])
    jobs = store.pending_jobs(sid, [f"k{i}" for i in range(4)])

    def attempt(job, gpu: str, start_s: float, end_s: float, **result) -> None:
        at = store.start_attempt(job.id, "box", gpu)
        if result:
            store.finish_attempt(at, "succeeded", job_state="succeeded", result=make(**result))
        else:
            store.finish_attempt(at, "failed", job_state="failed", error_kind="oom",
                                 error="oom")
        timed(store, at, start_s, end_s)

    attempt(jobs[0], "0", 0, 100, elapsed_s=6.0, load_s=20.0, compile_s=40.0)
    attempt(jobs[1], "1", 0, 20, elapsed_s=5.0, load_s=4.0, warmup_s=1.0)
    attempt(jobs[2], "1", 20, 30)
    attempt(jobs[2], "1", 30, 50, elapsed_s=5.0, load_s=4.0, warmup_s=1.0)
    timed(store, store.start_attempt(jobs[3].id, "box", "0"), 100, None)


def test_bars_place_the_phases_at_the_end_of_each_attempt(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 't.db'}")
    fill(store)
    bars = attempt_bars(store, "s")
    assert [(b.variant, b.lane, b.outcome) for b in bars] == [
        ("vllm", "box / 0", "succeeded"), ("nano", "box / 1", "succeeded"),
        ("nano", "box / 1", "failed"), ("nano", "box / 1", "succeeded"),
        ("vllm", "box / 0", "running")]
    vllm = bars[0]
    assert vllm.held_s == 100 and vllm.start_s == 60 and vllm.generate_s == 6
    (start, s_from, s_to), (gen, g_from, g_to) = vllm.phases()
    assert (start, gen) == ("engine start", "generate")
    assert s_from == T0 + timedelta(seconds=34) and s_to == g_from
    assert g_from == T0 + timedelta(seconds=94) and g_to == T0 + timedelta(seconds=100)
    assert bars[2].phases() == [] and bars[2].attempt == 1 and bars[3].attempt == 2
    assert bars[4].end > T0 + timedelta(days=1)  # still running: it ends now


def test_efficiency_per_variant_and_overall(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 't.db'}")
    fill(store)
    eff = {e.variant: e for e in efficiency(attempt_bars(store, "s"))}
    assert list(eff) == ["vllm", "nano", ALL]
    assert eff["vllm"].ratio == pytest.approx(0.06) and eff["vllm"].attempts == 1
    # the failed attempt's 10 s count as held time with no generate
    assert eff["nano"].ratio == pytest.approx(10 / 50) and eff["nano"].attempts == 3
    assert eff[ALL].ratio == pytest.approx(16 / 150)
    # the engine starts' share: what reuse: repeats would save
    assert eff["vllm"].start_share == pytest.approx(0.6)
    assert eff["nano"].start_share == pytest.approx(10 / 50)
    assert eff[ALL].text() == ("all: 11% (16.0 s timed generate of 150.0 s GPU time held, "
                               "4 attempt(s), engine starts 47%)")
    assert efficiency([]) == []


def test_a_lost_coordinators_attempt_ends_at_its_last_heartbeat(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 't.db'}")
    fill(store)
    beat = T0 + timedelta(seconds=130)
    with store.session() as s:
        s.execute(update(Sweep).values(owner="gone:1", heartbeat_at=beat))
    last = attempt_bars(store, "s")[-1]
    assert last.outcome == LOST_ATTEMPT and last.end == beat and last.held_s == 30
    assert efficiency(attempt_bars(store, "s"))[-1].attempts == 4  # not counted


def test_a_bar_is_never_shorter_than_its_phases(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 't.db'}")
    fill(store)
    with store.session() as s:  # as a record written on a host whose clock runs behind
        s.execute(update(Attempt).where(Attempt.number == 2).values(
            finished_at=T0 + timedelta(seconds=32)))
    bar = attempt_bars(store, "s")[3]
    assert bar.held_s == 10
    assert [(f - bar.start).total_seconds() for _, f, _ in bar.phases()] == [0, 0]
