"""dashboard.charts: pure functions of DataFrames, no browser, no database."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from dashboard import charts
from db.read.metrics import METRICS
from db.read.sweeps import format_duration


def summary_rows(rows: list[dict]) -> pd.DataFrame:
    """A frame shaped like db.read.results.summarize's."""
    base = {"engine": "nano", "options": "{}", "model": "m", "workload": "standard",
            "workload_fingerprint": "fp", "gpu_memory_utilization": 0.9, "max_model_len": None,
            "gpu_name": "H100", "n": 3, "std": 1.0, "ci95": 2.0, "cv": 0.01,
            "noisy": False, "speedup": 1.0, "speedup_low": math.nan, "speedup_high": math.nan,
            "verdict": "baseline", "speedup_note": "", "elapsed_s_mean": 1.0,
            "output_tokens": 100, "start_s_mean": 1.0, "gpu_mark": ""}
    return pd.DataFrame([{**base, **r} for r in rows])


def test_options_become_filter_axes_and_filters_apply():
    df = pd.DataFrame({"variant": ["a", "a", "b"], "max_num_seqs": [4, 8, 4],
                       "gpu_memory_utilization": [0.9, 0.9, 0.8], "gpu_name": ["H100"] * 3,
                       "model": ["m"] * 3,
                       "options": ["{}", '{"block": 16}', '{"block": 32, "fuse": true}']})
    axes = charts.filter_axes(df)
    assert axes["variant"] == ["a", "b"] and axes["max_num_seqs"] == [4, 8]
    assert axes["option: block"] == [16, 32, "default"] or set(axes["option: block"]) == {
        16, 32, "default"}
    assert set(axes["option: fuse"]) == {True, "default"}
    assert len(charts.apply_filters(df, {})) == 3
    assert len(charts.apply_filters(df, {"variant": [], "max_num_seqs": [4]})) == 2
    assert charts.apply_filters(df, {"option: block": [32]})["variant"].tolist() == ["b"]


def test_variant_labels_name_options_only_where_a_variant_has_several():
    s = summary_rows([{"variant": "a", "max_num_seqs": 4, "mean": 1.0},
                      {"variant": "b", "options": '{"x": 1}', "max_num_seqs": 4,
                       "mean": 1.0},
                      {"variant": "b", "options": '{"x": 2}', "max_num_seqs": 4,
                       "mean": 1.0}])
    assert charts.variant_labels(s).tolist() == ["a", 'b {"x": 1}', 'b {"x": 2}']


def test_best_config_and_speedup_table():
    s = summary_rows([{"variant": "base", "max_num_seqs": 8, "mean": 100.0},
                      {"variant": "fast", "max_num_seqs": 8, "mean": 150.0,
                       "speedup": 1.5, "speedup_low": 1.4, "speedup_high": 1.6,
                       "verdict": "faster", "noisy": True, "cv": 0.08},
                      {"variant": "fast", "max_num_seqs": 4, "mean": 90.0, "n": 1,
                       "std": math.nan, "cv": math.nan, "ci95": math.nan,
                       "speedup": math.nan, "verdict": "",
                       "speedup_note": "baseline has no result at these settings",
                       "gpu_mark": "1 of 1: throttled (sw_thermal)"}])
    best = charts.best_config(s)
    assert best["variant"] == "fast"
    # base is distinguishably slower; one measurement cannot be told apart from anything.
    assert charts.rivals(s, best)["max_num_seqs"].tolist() == [4]
    assert charts.best_config(s.iloc[0:0]) is None
    t = charts.speedup_table(s)
    assert t["max_num_seqs"].tolist() == [4, 8, 8]
    assert t.loc[2, "speedup"] == 1.5 and t.loc[2, "noisy"] and t.loc[2, "CV"] == "8.0%"
    assert t.loc[2, "speedup (95% interval)"] == "1.50× (1.40–1.60×) faster"
    assert t.loc[1, "speedup (95% interval)"] == "1.00× baseline"
    assert "settings" in t.loc[0, "note"]
    assert t.loc[0, "CV"] == t.loc[0, "± 95% CI"] == "n=1, no spread"  # never 0.0% or None
    assert t.loc[0, "max_model_len"] == "default"
    assert t["GPU mark"].tolist() == ["1 of 1: throttled (sw_thermal)", "", ""]
    assert charts.speedup_table(pd.DataFrame()).empty


def test_no_winner_is_crowned_that_is_not_distinguishable():
    close = summary_rows([{"variant": "a", "max_num_seqs": 8, "mean": 100.0,
                           "std": 10.0},
                          {"variant": "b", "max_num_seqs": 8, "mean": 104.0,
                           "std": 10.0},
                          {"variant": "c", "max_num_seqs": 8, "mean": 50.0,
                           "std": 1.0}])
    best = charts.best_config(close)
    assert best["variant"] == "b"
    assert charts.rivals(close, best)["variant"].tolist() == ["a"]
    one = summary_rows([{"variant": "a", "max_num_seqs": 8, "mean": 100.0, "n": 1,
                         "std": math.nan},
                        {"variant": "b", "max_num_seqs": 8, "mean": 300.0, "n": 1,
                         "std": math.nan}])
    assert charts.rivals(one, charts.best_config(one))["variant"].tolist() == ["a"]


def test_compare_pairs_matching_configs_and_says_why_not():
    a = summary_rows([{"variant": "v", "max_num_seqs": 4, "mean": 100.0},
                      {"variant": "v", "max_num_seqs": 8, "mean": 100.0},
                      {"variant": "v", "max_num_seqs": 16, "mean": 100.0},
                      {"variant": "v", "max_num_seqs": 32, "mean": 100.0}])
    b = summary_rows([{"variant": "v", "max_num_seqs": 4, "mean": 120.0},
                      {"variant": "v", "max_num_seqs": 8, "mean": 120.0,
                       "gpu_name": "A100"},
                      {"variant": "v", "max_num_seqs": 16, "mean": 120.0,
                       "workload_fingerprint": "other", "model": "m2"},
                      {"variant": "v", "max_num_seqs": 64, "mean": 120.0}])
    c = charts.compare(a, b, ["variant", "max_num_seqs"]).set_index("max_num_seqs")
    assert c.loc[4, "comparable"] and c.loc[4, "ratio"] == pytest.approx(1.2)
    assert c.loc[4, "verdict"] == "B faster" and 1 < c.loc[4, "ratio_low"] < 1.2
    assert not c.loc[8, "comparable"] and c.loc[8, "reason"] == "different GPU (H100 vs A100)"
    assert math.isnan(c.loc[8, "ratio"]) and c.loc[8, "b_tok_s"] == 120.0
    assert c.loc[16, "reason"].startswith("different model (m vs m2); different workload")
    assert c.loc[32, "reason"] == "only in A" and c.loc[64, "reason"] == "only in B"
    assert charts.compare(a.iloc[0:0], b.iloc[0:0], ["variant"]).empty


def test_compare_prefers_the_matching_card_where_a_side_ran_on_several():
    a = summary_rows([{"variant": "v", "max_num_seqs": 4, "mean": 100.0},
                      {"variant": "v", "max_num_seqs": 4, "mean": 50.0,
                       "gpu_name": "A100"}])
    b = summary_rows([{"variant": "v", "max_num_seqs": 4, "mean": 60.0,
                       "gpu_name": "A100"}])
    c = charts.compare(a, b, ["max_num_seqs"])
    assert c["comparable"].tolist() == [False, True] or c["comparable"].tolist() == [True,
                                                                                     False]
    ok = c[c["comparable"]].iloc[0]
    assert ok["ratio"] == pytest.approx(1.2) and ok["a_gpu"] == "A100"
    assert c[~c["comparable"]].iloc[0]["reason"] == "only in A"


def test_heatmap_facets_by_variant_and_card():
    s = summary_rows([{"variant": v, "max_num_seqs": m, "gpu_memory_utilization": g,
                       "mean": float(m), "gpu_name": card}
                      for v in ("a", "b") for m in (4, 8) for g in (0.8, 0.9)
                      for card in ("H100", "H200")])
    spec = charts.heatmap(s).to_dict()
    assert spec["facet"]["column"]["field"] == "label"
    assert spec["facet"]["row"]["field"] == "gpu_name"
    marks = [layer["mark"]["type"] for layer in spec["spec"]["layer"]]
    assert marks == ["rect", "text"]
    one_card = charts.heatmap(s[s["gpu_name"] == "H100"]).to_dict()
    assert one_card["facet"]["field"] == "label" and "row" not in one_card["facet"]
    # Many variants on one card wrap into rows of panels that fit the page.
    many = summary_rows([{"variant": f"v{i}", "max_num_seqs": m, "gpu_memory_utilization": 0.9,
                          "mean": float(m), "gpu_name": "H200"}
                         for i in range(7) for m in (64, 128, 256)])
    spec = charts.heatmap(many).to_dict()
    assert spec["columns"] == 3 and spec["columns"] * (spec["spec"]["width"] + 25) <= 720


def _marks(spec: dict) -> list[str]:
    return [layer["mark"]["type"] if isinstance(layer["mark"], dict) else layer["mark"]
            for layer in spec["layer"]]


def test_metric_lines_and_start_breakdown():
    s = summary_rows([{"variant": v, "max_num_seqs": m, "mean": float(m),
                       "ci95": 2.0 * m} for v in ("a", "b") for m in (4, 8, 16)])
    repeats = pd.DataFrame([{"variant": v, "options": "{}", "max_num_seqs": m,
                             "gpu_memory_utilization": 0.9, "max_model_len": None,
                             "gpu_name": "H100", "output_tok_s": float(m) + d, "repeat": i}
                            for v in ("a", "b") for m in (4, 8, 16)
                            for i, d in enumerate((-1.0, 0.0, 1.0))])
    spec = charts.metric_lines(s, repeats).to_dict()
    assert _marks(spec) == ["errorbar", "line", "point"]
    data = spec["datasets"]
    band = next(rows for rows in data.values() if rows and "lo" in rows[0])
    assert min(r["lo"] for r in band) == 0  # the interval is cut at zero, never below
    points = next(rows for rows in data.values() if rows and "value" in rows[0])
    assert len(points) == 18  # every repeat
    for layer in spec["layer"]:
        assert layer["encoding"]["color"]["field"] == "label"  # a colour per variant
        assert layer["encoding"]["y"]["scale"]["domainMin"] == 0
    assert _marks(charts.metric_lines(s).to_dict()) == ["errorbar", "line"]
    b = charts.start_breakdown({"imports_s": 2.5, "load_s": 1.5, "capture_s": 2.0,
                                "warmup_s": None})
    assert b["phase"].tolist() == ["imports", "load", "profile", "compile", "capture", "warm-up"]
    assert b["seconds"].tolist() == [2.5, 1.5, 0.0, 0.0, 2.0, 0.0]
    assert charts.start_chart(b).to_dict()["mark"]["type"] == "bar"


def test_compare_chart_greys_what_cannot_be_compared():
    a = summary_rows([{"variant": "v", "max_num_seqs": 4, "mean": 100.0},
                      {"variant": "v", "max_num_seqs": 8, "mean": 100.0}])
    b = summary_rows([{"variant": "v", "max_num_seqs": 4, "mean": 110.0},
                      {"variant": "v", "max_num_seqs": 8, "mean": 110.0,
                       "gpu_name": "A100"}])
    cmp = charts.compare(a, b, ["max_num_seqs"])
    spec = charts.compare_chart(cmp, "A", "B", ["max_num_seqs"]).to_dict()
    scale = spec["encoding"]["color"]["scale"]
    assert scale["domain"][2:] == ["A (not comparable)", "B (not comparable)"]
    assert scale["range"][2:] == [charts.GREY_LIGHT, charts.GREY]
    rows = next(iter(spec["datasets"].values()))
    assert {r["fill"] for r in rows if r["config"] == "8"} == {"A (not comparable)",
                                                               "B (not comparable)"}
    assert {r["fill"] for r in rows if r["config"] == "4"} == {"A", "B"}


def test_config_label():
    row = pd.Series({"variant": "v", "options": '{"b": 2, "a": true}', "max_num_seqs": 4,
                     "gpu_memory_utilization": 0.9})
    keys = ["variant", "options", "max_num_seqs", "gpu_memory_utilization"]
    assert charts.config_label(row, keys) == "v · a=True b=2 · 4 · 0.9"
    assert charts.config_label(row.replace('{"b": 2, "a": true}', "{}"), keys) == "v · 4 · 0.9"


def test_sweeps_table_and_durations():
    df = pd.DataFrame([{"id": 1, "name": "a b", "state": "done", "note": "", "done": 2,
                        "running": 0,
                        "failed": 0, "pending": 0, "total": 2, "progress": 1.0,
                        "started": pd.Timestamp("2026-01-01", tz="UTC"), "finished": None,
                        "duration_s": 3725.0, "runs": 3, "hosts": 1, "baseline": None,
                        "owner": None},
                       {"id": 2, "name": "new", "state": "lost",
                        "note": "coordinator lost 3 min ago", "done": 0, "running": 1,
                        "failed": 0, "pending": 1, "total": 2, "progress": 0.0,
                        "started": pd.Timestamp("2026-01-02", tz="UTC"), "finished": None,
                        "duration_s": 65.0, "runs": 1, "hosts": 1, "baseline": None,
                        "owner": "x"}])
    t = charts.sweeps_table(df)
    assert t["name"].tolist() == ["new", "a b"]  # newest first
    assert t["note"].tolist() == ["coordinator lost 3 min ago", ""]
    assert t["duration"].tolist() == ["1m 05s", "1h 02m over 3 runs"]
    assert t["link"].tolist() == ["sweep?sweep=new", "sweep?sweep=a%20b"]
    assert format_duration(None) == "" and format_duration(9.4) == "9s"
    assert format_duration(float("nan")) == ""


def test_gantt_draws_a_lane_per_gpu_a_bar_per_attempt_and_its_phases(tmp_path):
    from db.read.timeline import attempt_bars, efficiency
    from db.store import Store
    from tests.db.read.test_timeline import fill

    store = Store(f"sqlite:///{tmp_path / 't.db'}")
    fill(store)
    frame = charts.timeline_frame(attempt_bars(store, "s"))
    attempts = frame[frame["part"] == "attempt"]
    assert attempts["outcome"].tolist() == ["succeeded", "succeeded", "failed", "succeeded",
                                            "running"]
    assert set(attempts["lane"]) == {"box / 0", "box / 1"}
    phases = frame[frame["part"] != "attempt"]
    assert phases["part"].tolist() == ["engine start", "generate"] * 3
    assert phases["seconds"].tolist()[:2] == [60.0, 6.0]
    assert frame["start"].dt.tz is None  # naive UTC, drawn on a UTC scale
    spec = charts.gantt(frame).to_dict()
    bars, inside = spec["layer"]
    assert bars["encoding"]["fill"]["field"] == "variant"
    assert bars["encoding"]["stroke"]["field"] == "outcome"
    assert bars["encoding"]["stroke"]["scale"]["domain"] == ["succeeded", "failed", "running"]
    assert inside["encoding"]["fill"]["field"] == "part"
    assert bars["encoding"]["y"]["sort"] == ["box / 0", "box / 1"]
    table = charts.efficiency_table(efficiency(attempt_bars(store, "s")))
    assert table["variant"].tolist() == ["vllm", "nano", "all"]
    assert table["efficiency"].round(2).tolist() == [0.06, 0.2, 0.11]
    assert table["engine starts"].round(2).tolist() == [0.6, 0.2, 0.47]


TTFT = METRICS["ttft_p50_ms"]


def test_a_latency_metric_lower_is_better_and_missing_is_never_zero():
    s = summary_rows([{"variant": "a", "max_num_seqs": 4, "mean": 30.0, "std": 1.0},
                      {"variant": "b", "max_num_seqs": 4, "mean": 20.0, "std": 1.0},
                      {"variant": "vllm", "max_num_seqs": 4, "mean": math.nan, "n": 0,
                       "std": math.nan, "ci95": math.nan, "cv": math.nan}])
    best = charts.best_config(s, TTFT)
    assert best["variant"] == "b"  # the lowest latency, not the highest
    assert charts.rivals(s, best, TTFT).empty  # 20 ± 1 is distinguishably below 30 ± 1
    heat = charts.heatmap(s, TTFT).to_dict()
    cells = {r["label"]: r for r in next(iter(heat["datasets"].values()))}
    assert cells["vllm"]["text"] == "—" and cells["vllm"]["mean"] is None
    assert cells["b"]["text"] == "20.00" and cells["b"]["bright"]  # the better end is bright
    assert heat["spec"]["layer"][0]["encoding"]["color"]["scale"]["reverse"] is True
    t = charts.speedup_table(s, TTFT)
    assert "TTFT p50 (ms)" in t.columns and t["TTFT p50 (ms)"].isna().tolist() == [
        False, False, True]
    assert t.loc[2, "CV"] == "—"
    lines = charts.metric_lines(s, metric=TTFT).to_dict()
    assert {r["label"] for rows in lines["datasets"].values() for r in rows} == {"a", "b"}
    assert lines["layer"][1]["encoding"]["y"]["title"] == "TTFT p50 (ms)"
    assert charts.best_config(s[s["variant"] == "vllm"], TTFT) is None


def test_speedup_bars_mark_ties_and_the_one_line():
    s = summary_rows([{"variant": "base", "max_num_seqs": 4, "mean": 100.0},
                      {"variant": "fast", "max_num_seqs": 4, "mean": 150.0, "speedup": 1.5,
                       "speedup_low": 1.4, "speedup_high": 1.6, "verdict": "faster"},
                      {"variant": "same", "max_num_seqs": 4, "mean": 101.0, "speedup": 1.01,
                       "speedup_low": 0.9, "speedup_high": math.inf,
                       "verdict": "not distinguishable"},
                      {"variant": "alone", "max_num_seqs": 8, "mean": 90.0,
                       "speedup": math.nan, "verdict": "", "speedup_note": "no baseline"}])
    spec = charts.speedup_bars(s).to_dict()
    assert _marks(spec) == ["bar", "errorbar", "rule"]
    bars = spec["layer"][0]
    assert bars["encoding"]["color"]["scale"]["domain"] == ["faster", "slower",
                                                            "not distinguishable"]
    assert "not distinguishable" in bars["encoding"]["opacity"]["condition"]["test"]
    rows = {r["config"]: r for r in spec["datasets"][spec["layer"][0]["data"]["name"]]}
    assert set(rows) == {"fast  max_num_seqs 4", "same  max_num_seqs 4"}  # no baseline, no NaN
    assert rows["same  max_num_seqs 4"]["hi"] == pytest.approx(1.6 * 1.15)  # unbounded: edge
    rule = spec["layer"][2]
    assert spec["datasets"][rule["data"]["name"]] == [{"x": 1.0}]


def test_latency_throughput_points_and_their_front():
    s = summary_rows([{"variant": v, "max_num_seqs": m, "mean": 0.0,
                       "output_tok_s_mean": tok, "tpot_p50_ms_mean": lat}
                      for v, m, tok, lat in (("a", 4, 100.0, 10.0), ("a", 8, 180.0, 12.0),
                                             ("b", 4, 90.0, 11.0), ("b", 8, 200.0, 15.0),
                                             ("v", 4, 300.0, math.nan))])
    points = charts.latency_throughput(s, METRICS["tpot_p50_ms"])
    assert len(points) == 4  # a configuration without the latency is no point
    front = {(r.label, r.max_num_seqs): r.pareto for r in points.itertuples()}
    assert front == {("a", 4): True, ("a", 8): True, ("b", 4): False, ("b", 8): True}
    spec = charts.pareto_chart(points, METRICS["tpot_p50_ms"]).to_dict()
    assert _marks(spec) == ["line", "line", "point", "text"]
    assert spec["layer"][0]["encoding"]["x"]["title"] == "TPOT p50 (ms)"
    assert spec["layer"][3]["encoding"]["text"]["field"] == "max_num_seqs"
    assert charts.latency_throughput(s.assign(ttft_p50_ms_mean=math.nan),
                                     METRICS["ttft_p50_ms"]).empty  # none has it


def test_telemetry_chart_draws_each_series_with_the_phases_and_the_throttled_samples():
    from engine.gpu_telemetry import Reading, Telemetry

    tel = Telemetry(1.0, done_s=6.0)
    for t in range(8):
        tel.add(float(t), Reading(gpu_pct=10 * t, power_w=None if t == 3 else 100.0 + t,
                                  sm_mhz=1980, temp_c=50,
                                  throttle=0x20 if t == 5 else 0x4 if t == 6 else 0x1,
                                  mem_used_bytes=None), others=0)
    frame = charts.telemetry_frame(tel)
    assert len(frame) == 8 * len(charts.TELEMETRY_PANELS)
    busy = frame[frame["panel"] == "GPU busy %"]
    assert busy["value"].tolist() == [10 * t for t in range(8)]
    assert busy["throttle"].tolist() == ["", "", "", "", "", "sw_thermal", "sw_power_cap", ""]
    phases = charts.phase_frame([("engine start", 1.0, 4.0), ("generate", 4.0, 6.0)])
    spec = charts.telemetry_chart(frame, phases).to_dict()
    # A panel per series that has a value (memory was never read), each: the phases shaded,
    # the line, the throttled samples.
    panels = spec["vconcat"]
    assert len(panels) == len(charts.TELEMETRY_PANELS) - 1
    titles = [p["layer"][1]["encoding"]["y"]["title"] for p in panels]
    assert titles == ["GPU busy %", "power W", "SM clock MHz", "temperature °C"]
    datasets = spec["datasets"]
    rects = datasets[panels[0]["layer"][0]["data"]["name"]]
    assert [(r["phase"], r["start"], r["end"]) for r in rects] == [
        ("engine start", 1.0, 4.0), ("generate", 4.0, 6.0)]
    power = datasets[panels[1]["layer"][1]["data"]["name"]]
    assert [r["t"] for r in power] == [0, 1, 2, 4, 5, 6, 7]  # the unread sample left out
    red = datasets[panels[0]["layer"][2]["data"]["name"]]
    # Red: the sample slowed by heat; not the one at the power cap, a loaded card's usual.
    assert [(r["t"], r["throttle"]) for r in red] == [(5.0, "sw_thermal")]
    # Without phases (an attempt without a result): the line and the red points only.
    bare = charts.telemetry_chart(frame, charts.phase_frame([])).to_dict()
    assert [len(p["layer"]) for p in bare["vconcat"]] == [2] * 4


def test_config_label_names_the_engines_own_max_model_len():
    row = pd.Series({"max_num_seqs": 128, "gpu_memory_utilization": 0.5, "max_model_len": None})
    keys = ["max_num_seqs", "gpu_memory_utilization", "max_model_len"]
    assert charts.config_label(row, keys) == "128 · 0.5 · default"
    assert charts.config_label(row.replace({None: float("nan")}), keys) == "128 · 0.5 · default"
