import math

import pytest

from db.read.metrics import METRICS
from db.read.results import results_frame, speedup_text, spread_text, summarize
from db.read.stats import mean_halfwidth
from db.store import Store
from tests.db.read.recorded import record, run_all, sweep_text
from tests.engine.test_result import make


def _fill(store: Store, rows: list[tuple[str, int, str, float]]) -> None:
    """rows: (variant, max_num_seqs, gpu_name, tok/s), each one finished job. The stored
    sweep file does not parse (another version wrote it): every job is current."""
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
    assert len(df) == 8 and set(df["load_s"]) == {0.5} and df.attrs["hidden"] == 0
    s = summarize(df, "base").set_index(["variant", "max_num_seqs", "gpu_name"])
    base = s.loc[("base", 4, "H100")]
    assert base["n"] == 3 and base["mean"] == pytest.approx(100)
    assert base["std"] == pytest.approx(10) and base["cv"] == pytest.approx(0.1)
    assert base["noisy"] and base["verdict"] == "baseline"
    assert base["ci95"] == pytest.approx(4.3027 * 10 / math.sqrt(3), rel=1e-4)
    fast = s.loc[("fast", 4, "H100")]
    assert fast["speedup"] == pytest.approx(2.0) and fast["verdict"] == "faster"
    assert 1 < fast["speedup_low"] < 2 < fast["speedup_high"]
    assert speedup_text(fast).startswith("2.00× (") and speedup_text(fast).endswith("faster")
    assert speedup_text(base) == "1.00× baseline"
    other_card = s.loc[("fast", 4, "A100")]
    assert math.isnan(other_card["speedup"]) and "card" in other_card["speedup_note"]
    other_setting = s.loc[("fast", 8, "H100")]
    assert math.isnan(other_setting["speedup"]) and "settings" in other_setting["speedup_note"]


def test_one_measurement_has_no_spread(db_url):
    store = Store(db_url)
    _fill(store, [("base", 4, "H100", 100.0), ("base", 4, "H100", 110.0),
                  ("fast", 4, "H100", 200.0)])
    s = summarize(results_frame(store, "s"), "base").set_index("variant")
    one = s.loc["fast"]
    assert one["n"] == 1 and math.isnan(one["cv"]) and math.isnan(one["ci95"])
    assert not one["noisy"]
    assert spread_text(one) == "n=1, no spread"
    assert speedup_text(one) == "1.90× (n=1, no spread)"
    assert one["verdict"] == "not distinguishable"
    assert "None" not in speedup_text(one) + spread_text(one)
    assert mean_halfwidth(2, math.sqrt(50)) == pytest.approx(s.loc["base", "ci95"])


def test_a_max_model_len_axis_is_two_configurations(tmp_path):
    """Each max_model_len is a configuration of its own: never merged into n=2."""
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    planned = record(store, sweep_text(matrix="{max_num_seqs: [4], max_model_len: [64, 128]}",
                                       repeats=2))
    run_all(store, planned, {("base", 64, 0): 100.0, ("base", 64, 1): 102.0,
                             ("base", 128, 0): 300.0, ("base", 128, 1): 306.0,
                             "fast": 200.0})
    df = results_frame(store, "s")
    assert sorted(set(df["max_model_len"])) == [64, 128]
    s = summarize(df, "base").set_index(["variant", "max_model_len"])
    assert len(s) == 4 and (s["n"] == 2).all()
    assert s.loc[("base", 64), "cv"] < 0.02 and s.loc[("base", 128), "cv"] < 0.02
    # Each speedup is against the baseline at the same max_model_len.
    assert s.loc[("fast", 64), "speedup"] == pytest.approx(200 / 101)
    assert s.loc[("fast", 128), "speedup"] == pytest.approx(200 / 303)


def test_option_axes_are_columns(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    planned = record(store, sweep_text(
        variants="  base: {kind: hf}", repeats=1,
        matrix="{max_num_seqs: [4], attn_implementation: [sdpa, eager]}"))
    run_all(store, planned, {"base": 100.0})
    s = summarize(results_frame(store, "s"), "base")
    assert sorted(s["option: attn_implementation"]) == ["default", "eager"]
    assert len(s) == 2


def test_a_renamed_variant_and_baseline_take_their_new_names(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    planned = record(store, sweep_text())
    run_all(store, planned, {("base", 0): 100.0, ("base", 1): 110.0, ("base", 2): 90.0,
                             "fast": 200.0})
    again = record(store, sweep_text(
        variants="  ref: {kind: hf}\n  quick: {kind: hf, options: {attn_implementation: "
                 "eager}}", baseline="ref"))
    assert {p.key for p in again} == {p.key for p in planned}  # nothing to rerun
    df = results_frame(store, "s")
    assert set(df["variant"]) == {"ref", "quick"} and df.attrs["hidden"] == 0
    s = summarize(df, "ref").set_index("variant")
    assert s.loc["quick", "speedup"] == pytest.approx(2.0)
    assert s.loc["ref", "verdict"] == "baseline"


def test_jobs_of_an_earlier_sweep_file_are_hidden_unless_asked(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    planned = record(store, sweep_text(matrix="{max_num_seqs: [4, 8]}", repeats=1))
    run_all(store, planned, {"base": 100.0, "fast": 200.0})
    record(store, sweep_text(matrix="{max_num_seqs: [4]}", repeats=1))
    now = results_frame(store, "s")
    assert set(now["max_num_seqs"]) == {4} and now.attrs["hidden"] == 2
    every = results_frame(store, "s", every=True)
    assert len(every) == 4 and every.attrs["hidden"] == 0
    assert set(every[~every["current"]]["max_num_seqs"]) == {8}


def test_empty_sweep_summarizes_to_nothing(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'e.db'}")
    store.upsert_sweep("s", "name: s", None)
    assert summarize(results_frame(store, "s"), None).empty


def test_a_latency_metric_summary_lower_is_better_and_missing_stays_missing(db_url):
    """TTFT: the speedup is the baseline's over the configuration's (lower is better); a
    variant whose engine reported no latency has none: n = 0, NaN, never 0."""
    store = Store(db_url)
    sid = store.upsert_sweep("s", "name: s", "base")
    rows = [("base", 0.040), ("base", 0.042), ("base", 0.038), ("fast", 0.020),
            ("fast", 0.021), ("fast", 0.019), ("vllm", None), ("vllm", None)]
    store.add_jobs(sid, [
        dict(key=f"k{i}", ordinal=i, variant=v, engine="hf", options={}, model="m",
             workload="standard", workload_fingerprint="fp", max_num_seqs=4,
             gpu_memory_utilization=0.9, repeat=i, spec="{}")
        for i, (v, _t) in enumerate(rows)])
    for job, (_v, ttft) in zip(store.pending_jobs(sid, [f"k{i}" for i in range(len(rows))]),
                               rows, strict=True):
        at = store.start_attempt(job.id, "h", "0")
        store.finish_attempt(at, "succeeded", job_state="succeeded", result=make(
            ttft_p50_s=ttft, peak_memory_bytes=3 * 2**30))
    df = results_frame(store, "s")
    s = summarize(df, "base", METRICS["ttft_p50_ms"]).set_index("variant")
    assert s.attrs["metric"] == "ttft_p50_ms"
    assert s.loc["base", "mean"] == pytest.approx(40.0) and s.loc["base", "n"] == 3
    fast = s.loc["fast"]
    assert fast["speedup"] == pytest.approx(2.0) and fast["verdict"] == "faster"
    vllm = s.loc["vllm"]
    assert vllm["n"] == 0 and math.isnan(vllm["mean"]) and math.isnan(vllm["speedup"])
    assert vllm["speedup_note"] == "no TTFT p50 measured" and spread_text(vllm) == "—"
    assert s.loc["vllm", "output_tok_s_mean"] > 0  # the other figures are still there
    memory = summarize(df, "base", METRICS["peak_memory_gib"]).set_index("variant")
    assert memory.loc["fast", "mean"] == pytest.approx(3.0)  # in GiB
    assert memory.loc["fast", "verdict"] == "not distinguishable"  # the same 3 GiB


def test_every_metric_reads_a_results_column(db_url):
    store = Store(db_url)
    _fill(store, [("base", 4, "H100", 100.0)])
    df = results_frame(store, "s")
    assert {m.column for m in METRICS.values()} <= set(df.columns)
    assert df["total_tok_s"].iloc[0] == pytest.approx(200.0)
    s = summarize(df, "base", METRICS["start_s"])
    assert s["mean"].iloc[0] == pytest.approx(1.0)
