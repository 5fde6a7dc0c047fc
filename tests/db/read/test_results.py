import math

import pytest

from db.read.results import results_frame, summarize, t95
from db.store import Store
from tests.engine.test_result import make


def _fill(store: Store, rows: list[tuple[str, int, str, float]]) -> None:
    """rows: (variant, max_num_seqs, gpu_name, tok/s), each one finished job."""
    sid = store.upsert_sweep("s", "name: s", "base")
    store.add_jobs(sid, [
        dict(key=f"k{i}", ordinal=i, variant=v, engine="hf", options={}, model="m",
             workload="standard", workload_fingerprint="fp", max_num_seqs=mns,
             gpu_memory_utilization=0.9, repeat=i, spec="{}")
        for i, (v, mns, _g, _t) in enumerate(rows)
    ])
    jobs = store.pending_jobs(sid, [f"k{i}" for i in range(len(rows))])
    for job, (_v, _m, gpu, tok_s) in zip(jobs, rows, strict=True):
        at = store.start_attempt(job.id, "h", "0")
        # tok_s output and 2 * tok_s total tok/s, 1.0 s to start.
        store.finish_attempt(at, "succeeded", job_state="succeeded", result=make(
            output_tokens=100, prompt_tokens=100, elapsed_s=100 / tok_s, load_s=0.5,
            warmup_s=0.5, env={"gpu": {"name": gpu}}))


def test_summary_mean_std_ci_and_speedup(db_url):
    store = Store(db_url)
    _fill(store, [("base", 4, "H100", 100.0), ("base", 4, "H100", 110.0),
                  ("base", 4, "H100", 90.0), ("fast", 4, "H100", 200.0),
                  ("fast", 4, "H100", 220.0), ("fast", 4, "H100", 180.0),
                  ("fast", 4, "A100", 150.0), ("fast", 8, "H100", 300.0)])
    df = results_frame(store, "s")
    assert len(df) == 8 and set(df["load_s"]) == {0.5}
    s = summarize(df, "base").set_index(["variant", "max_num_seqs", "gpu_name"])
    base = s.loc[("base", 4, "H100")]
    assert base["n"] == 3 and base["tok_s_mean"] == pytest.approx(100)
    assert base["tok_s_std"] == pytest.approx(10) and base["cv"] == pytest.approx(0.1)
    assert base["noisy"]
    assert base["ci95"] == pytest.approx(t95(3) * 10 / math.sqrt(3))
    assert s.loc[("fast", 4, "H100")]["speedup"] == pytest.approx(2.0)
    other_card = s.loc[("fast", 4, "A100")]
    assert math.isnan(other_card["speedup"]) and "card" in other_card["speedup_note"]
    other_setting = s.loc[("fast", 8, "H100")]
    assert math.isnan(other_setting["speedup"]) and "settings" in other_setting["speedup_note"]


def test_empty_sweep_summarizes_to_nothing(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'e.db'}")
    store.upsert_sweep("s", "name: s", None)
    assert summarize(results_frame(store, "s"), None).empty
