"""Every page's logic through streamlit.testing's AppTest, on a real SQLite file filled by
running real sweeps (see conftest.demo_db), and on the databases a user may get wrong."""

from __future__ import annotations

import pytest

from db.read.jobs import sweep_jobs
from db.store import Store
from tests.dashboard.pages import charts, open_page, texts

# The session's demo database takes a few minutes to build on a busy CPU; the first test to
# ask for it pays that.
pytestmark = pytest.mark.timeout(900)


def job_ids(url: str, sweep: str, state: str) -> list[int]:
    store = Store(url, upgrade=False)
    try:
        jobs = sweep_jobs(store, sweep)
    finally:
        store.close()
    return jobs[jobs["state"] == state]["job_id"].tolist()


def test_sweeps_page_lists_every_sweep(demo_db, monkeypatch):
    at = open_page(monkeypatch, demo_db)
    assert [t.value for t in at.title] == ["Sweeps"]
    table = at.dataframe[0].value.set_index("name")
    assert set(table.index) == {"dash", "dash-other", "dash-fail"}
    assert table.loc["dash", "state"] == "done" and table.loc["dash", "done"] == 16
    assert table.loc["dash-fail", "state"] == "failed" and table.loc["dash-fail", "failed"] == 2
    assert table.loc["dash", "progress"] == 1.0 and table.loc["dash", "hosts"] == 1
    assert table.loc["dash", "duration"].endswith("s")
    assert table.loc["dash", "link"] == "sweep?sweep=dash"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["sweeps"] == "3" and metrics["jobs failed"] == "2"


def test_sweep_page_shows_the_result_grid(demo_db, monkeypatch):
    at = open_page(monkeypatch, demo_db, "sweep", sweep="dash")
    assert at.title[0].value == "Sweep dash"
    # Measured on a shared CPU: a winner is crowned only where the data separate it.
    banner = texts(at.success) + texts(at.info)
    assert ("Best configuration" in banner) != ("No single best configuration" in banner)
    heat, bars, lines, pareto, timeline = charts(at)
    assert {r["part"] for rows in timeline["datasets_rows"] for r in rows} == {
        "attempt", "engine start", "generate"}
    assert heat["facet"]["field"] == "label"  # one card: the panels wrap
    assert {m["mark"]["type"] for m in heat["spec"]["layer"]} == {"rect", "text"}
    cells = heat["rows"]
    assert len(cells) == 8 and {c["label"] for c in cells} == {"nano", "nano-sync"}
    assert {(c["max_num_seqs"], c["gpu_memory_utilization"]) for c in cells} == {
        (2, 0.8), (2, 0.9), (4, 0.8), (4, 0.9)}
    assert lines["layer"][1]["mark"]["type"] == "line"
    table = at.dataframe[0].value
    assert len(table) == 8 and (table["n"] == 2).all()
    assert (table[table["variant"] == "nano"]["speedup"] == 1.0).all()
    assert table[table["variant"] == "nano-sync"]["speedup"].notna().all()
    assert table["± 95% CI"].str.startswith("± ").all()
    nano_sync = table[table["variant"] == "nano-sync"]
    assert nano_sync["speedup (95% interval)"].str.contains("×").all()
    assert set(nano_sync["verdict"]) <= {"faster", "slower", "not distinguishable"}
    assert len(at.get("download_button")) == 1
    labels = [m.label for m in at.sidebar.multiselect]
    assert labels == ["variant", "max_num_seqs", "gpu_memory_utilization",
                      "option: async_scheduling"]
    assert [layer["mark"]["type"] for layer in lines["layer"]] == ["errorbar", "line", "point"]
    repeats = [rows for rows in lines["datasets_rows"] if rows and "repeat" in rows[0]]
    assert len(repeats) == 1 and len(repeats[0]) == 16  # every measurement a point
    assert [layer["mark"]["type"] for layer in bars["layer"]] == ["bar", "errorbar", "rule"]
    assert {r["config"].split("  ")[0] for r in bars["rows"]} == {"nano-sync"}
    assert len(bars["rows"]) == 4  # the baseline's own rows are the 1.0x rule
    # nano times each sequence's first and last token: TPOT p50 against output tok/s
    assert pareto["layer"][0]["encoding"]["x"]["title"] == "TPOT p50 (ms)"
    points = pareto["rows"]
    assert len(points) == 8 and any(p["pareto"] for p in points)
    assert all(p["latency"] > 0 and p["tok_s"] > 0 for p in points)
    assert "output tok/s" in table.columns


def test_filters_and_baseline(demo_db, monkeypatch):
    at = open_page(monkeypatch, demo_db, "sweep", sweep="dash")
    at.sidebar.multiselect(key="filter max_num_seqs").set_value([4]).run()
    table = at.dataframe[0].value
    assert len(table) == 4 and set(table["max_num_seqs"]) == {4}
    assert len(charts(at)[0]["rows"]) == 4
    at.sidebar.multiselect(key="filter variant").set_value(["nano-sync"]).run()
    table = at.dataframe[0].value
    assert set(table["variant"]) == {"nano-sync"} and len(table) == 2
    assert set(table["note"]) == {"no baseline results"}  # nano is filtered out
    at.sidebar.multiselect(key="filter variant").set_value([]).run()
    at.sidebar.selectbox(key="baseline").set_value("nano-sync").run()
    table = at.dataframe[0].value
    assert (table[table["variant"] == "nano-sync"]["speedup"] == 1.0).all()
    assert at.subheader[1].value == "Speedup against nano-sync"


def test_sweep_of_failures_only_says_so(demo_db, monkeypatch):
    at = open_page(monkeypatch, demo_db, "sweep", sweep="dash-fail")
    assert "all 2 finished job(s) of this sweep failed" in at.error[0].value
    (timeline,) = charts(at)  # no result to chart; the failed attempts on their GPUs
    attempts = [r for r in timeline["datasets_rows"][0] if r["part"] == "attempt"]
    assert len(attempts) == 2 and {r["outcome"] for r in attempts} == {"failed"}
    failed = at.dataframe[0].value
    assert len(failed) == 2 and set(failed["error_kind"]) == {"bad_input"}
    assert failed["link"].str.startswith("job?job=").all()


CRAFTED = "x` ![i](http://evil.example/i.png) [click](http://evil.example) `"


def test_url_parameters_render_as_text_not_markdown(synth_db, monkeypatch):
    """A shareable URL's parameters are the sender's text: no image, no link of theirs in
    the app's own warning box."""
    for view, param in (("sweep", "sweep"), ("job", "job")):
        at = open_page(monkeypatch, synth_db, view, **{param: CRAFTED})
        shown = at.warning[0].value
        assert "](" not in shown.replace("\\]", "") and "![" not in shown, shown
        assert "\\[click\\]" in shown and "\\`" in shown, shown


def test_unknown_sweep_warns_and_falls_back(demo_db, monkeypatch):
    at = open_page(monkeypatch, demo_db, "sweep", sweep="nope")
    assert "no sweep named nope in" in at.warning[0].value
    assert at.sidebar.selectbox(key="sweep_pick").value in {"dash", "dash-other", "dash-fail"}


def test_job_page_of_a_succeeded_job(demo_db, monkeypatch):
    job = job_ids(demo_db, "dash", "succeeded")[0]
    at = open_page(monkeypatch, demo_db, "job", job=job)
    assert at.title[0].value == f"Job #{job}"
    attempts = at.dataframe[0].value
    assert len(attempts) == 1 and attempts["outcome"].iloc[0] == "succeeded"
    assert attempts["host"].iloc[0] and attempts["gpu"].iloc[0].startswith("cpu")
    assert attempts["duration_s"].iloc[0] > 0
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["output tok/s"].replace(",", "")) > 0
    figures = at.dataframe[1].value.set_index("figure")["value"]
    assert "output_tok_s" in figures and "workload_fingerprint" in figures
    (breakdown,) = charts(at)
    phases = [r["phase"] for r in breakdown["rows"]]
    assert phases == ["imports", "load", "profile", "compile", "capture", "warm-up"]
    assert {r["phase"]: r["seconds"] for r in breakdown["rows"]}["imports"] > 0
    env = at.dataframe[2].value.set_index("name")["value"]
    assert env["torch"] and env["python"]
    assert "output_tok_s" in at.code[0].value  # the log tail ends with the result line


def test_job_page_of_a_failed_job(demo_db, monkeypatch):
    job = job_ids(demo_db, "dash-fail", "failed")[0]
    at = open_page(monkeypatch, demo_db, "job", job=job)
    assert "the last attempt ended failed (bad_input)" in at.error[0].value
    assert at.code[0].value  # the log tail of the failed attempt


def test_job_page_without_or_with_a_wrong_job(demo_db, monkeypatch):
    at = open_page(monkeypatch, demo_db, "job", job=987654)
    assert "no job #987654" in at.warning[0].value
    at = open_page(monkeypatch, demo_db, "job")
    at.selectbox(key="job_sweep").set_value("dash-other").run()
    picked = at.selectbox(key="job_pick").value
    at.button[0].click().run()
    assert at.query_params["job"] == str(picked)
    assert at.title[0].value == f"Job #{picked}"
    # A job with a process of its own: its teardown, after its result line.
    assert "After its result line the job process ran on for" in texts(at.caption)
    # and the runner's checks around it (none to wait for on a CPU slot).
    assert ("The runner's GPU-idle checks: 0.00 s before the job process started, 0.00 s "
            "after it ended." in texts(at.caption))


def test_compare_two_sweeps_greys_out_other_workloads(demo_db, monkeypatch):
    at = open_page(monkeypatch, demo_db, "compare", a="dash", b="dash-other")
    table = at.dataframe[0].value
    paired = table[(table["variant"] == "nano") & (table["gpu_memory_utilization"] == 0.9)]
    assert len(paired) == 2
    assert paired["not comparable because"].str.startswith("different workload").all()
    assert (paired["B / A"] == "—").all()
    assert set(table[table["variant"] == "nano-sync"]["not comparable because"]) == {
        "only in A"}
    assert "No configuration can be compared" in at.warning[0].value
    (chart,) = charts(at)
    assert "A: dash (not comparable)" in chart["encoding"]["color"]["scale"]["domain"]
    assert {r["fill"] for r in chart["rows"]} == {"A: dash (not comparable)",
                                                  "B: dash-other (not comparable)"}


def test_compare_two_variants(demo_db, monkeypatch):
    at = open_page(monkeypatch, demo_db, "compare", a="dash", variant_a="nano",
                   variant_b="nano-sync")
    table = at.dataframe[0].value
    assert len(table) == 4 and table["B / A"].str.endswith("×").all()
    assert (table["not comparable because"] == "").all()
    assert {m.label: m.value for m in at.metric}["matching configurations"] == "4 / 4"


def test_hosts_page_without_inventory(demo_db, monkeypatch):
    at = open_page(monkeypatch, demo_db, "hosts")
    assert "No SSH inventory" in at.info[0].value
    seen = at.dataframe[0].value
    assert len(seen) == 1 and seen["attempts"].iloc[0] == 20
    assert seen["succeeded"].iloc[0] == 18 and seen["failed"].iloc[0] == 2


def test_hosts_page_with_inventory(synth_db, monkeypatch):
    at = open_page(monkeypatch, synth_db, "hosts")
    inv = at.dataframe[0].value.set_index("name")
    assert list(inv["state"]) == ["ok", "quarantined", "unreachable"]
    assert inv.loc["gpu-box-0", "gpu"] == "2× NVIDIA H100 80GB HBM3"
    assert inv.loc["gpu-box-1", "gpu"] == "NVIDIA H100 80GB HBM3"
    assert inv.loc["gpu-box-0", "jobs_run"] > 0 and inv.loc["gpu-box-9", "jobs_run"] == 0
    assert inv.loc["gpu-box-9", "check"] == "connection timed out"
    assert {m.label: m.value for m in at.metric}["quarantined"] == "1"


def test_running_sweep_refreshes_itself(synth_db, monkeypatch):
    at = open_page(monkeypatch, synth_db)
    table = at.dataframe[0].value.set_index("name")
    assert table.loc["phase2-002", "state"] == "running"
    assert table.loc["phase2-002", "running"] == 8
    assert table.loc["phase2-001", "state"] == "failed"
    assert "1 sweep(s) running; this page updates itself" in texts(at.caption)
    at = open_page(monkeypatch, synth_db, "sweep", sweep="phase2-002")
    assert ":blue-badge[running]" in texts(at.markdown)
    at = open_page(monkeypatch, synth_db, "sweep", sweep="phase2-001")
    assert "No results" in at.error[0].value


@pytest.mark.parametrize("view", [None, "sweep", "job", "compare", "hosts"])
def test_empty_database_pages_are_clear(empty_db, monkeypatch, view):
    at = open_page(monkeypatch, empty_db, view, job=1) if view == "job" else \
        open_page(monkeypatch, empty_db, view)
    said = texts(at.info) + texts(at.warning)
    assert {None: "No sweeps yet", "sweep": "No sweeps yet", "job": "no job #1",
            "compare": "No sweeps yet", "hosts": "No job has run yet"}[view] in said


@pytest.mark.parametrize("case", ["missing", "no schema", "old schema"])
def test_databases_it_cannot_show(case, tmp_path, old_db, monkeypatch):
    url = {"missing": f"sqlite:///{tmp_path / 'nothing-here.db'}",
           "no schema": f"sqlite:///{tmp_path / 'blank.db'}", "old schema": old_db}[case]
    if case == "no schema":
        (tmp_path / "blank.db").touch()
    at = open_page(monkeypatch, url)
    message = at.warning[0].value
    assert {"missing": "There is no database at", "no schema": "is empty",
            "old schema": "another version of benchsweep"}[case] in message
    if case == "old schema":
        assert "0000_before_results" in message
    if case == "missing":
        assert not (tmp_path / "nothing-here.db").exists()  # the dashboard creates nothing


def test_sweep_page_shows_its_timeline_and_efficiency(synth_db, monkeypatch):
    at = open_page(monkeypatch, synth_db, "sweep", sweep="phase2-000")
    assert "Timeline" in [h.value for h in at.subheader]
    timeline = charts(at)[-1]
    bars, inside = timeline["layer"]
    assert bars["encoding"]["y"]["field"] == "lane"
    rows = [r for data in timeline["datasets_rows"] for r in data]
    attempts = [r for r in rows if r["part"] == "attempt"]
    assert len(attempts) == 40 and {r["lane"] for r in attempts} == {
        f"gpu-box-{n % 4} / {n % 8}" for n in range(40)}
    assert {r["part"] for r in rows} == {"attempt", "engine start", "generate"}
    table = at.dataframe[-1].value  # the last table: efficiency
    assert table["variant"].tolist()[-1] == "all"
    assert set(table["variant"][:-1]) == {r["variant"] for r in attempts}
    assert table["attempts"].iloc[-1] == 40
    assert ((table["efficiency"] > 0) & (table["efficiency"] <= 1)).all()
    assert "**Efficiency**" in texts(at.markdown)
    # a sweep still running draws its running attempts too, ending now
    at = open_page(monkeypatch, synth_db, "sweep", sweep="phase2-002")
    rows = charts(at)[-1]["datasets_rows"][0]
    assert sum(r["outcome"] == "running" for r in rows) == 8


def test_the_metric_selector_drives_table_charts_and_speedups(demo_db, monkeypatch):
    at = open_page(monkeypatch, demo_db, "sweep", sweep="dash")
    at.sidebar.selectbox(key="metric").set_value("tpot_p50_ms").run()
    assert not at.exception
    assert at.query_params["metric"] == "tpot_p50_ms"
    table = at.dataframe[0].value
    assert "TPOT p50 (ms)" in table.columns and "output tok/s" not in table.columns
    heat = charts(at)[0]
    assert heat["spec"]["layer"][0]["encoding"]["color"]["title"] == "TPOT p50 (ms)"
    assert heat["spec"]["layer"][0]["encoding"]["color"]["scale"]["reverse"] is True
    # Lower is better: the speedup is the baseline's TPOT over the configuration's.
    key = ["max_num_seqs", "gpu_mem"]
    base = table[table["variant"] == "nano"].set_index(key)["TPOT p50 (ms)"]
    other = table[table["variant"] == "nano-sync"].set_index(key)
    for k, r in other.iterrows():
        assert r["speedup"] == pytest.approx(base[k] / r["TPOT p50 (ms)"], rel=1e-2)
    assert at.subheader[0].value.startswith("TPOT p50 (ms) over max_num_seqs")
    at.sidebar.selectbox(key="metric").set_value("peak_memory_gib").run()
    table = at.dataframe[0].value
    assert (table["peak memory (GiB)"] > 0).all() and (table["peak memory (GiB)"] < 64).all()
    assert set(table["verdict"]) <= {"baseline", "smaller", "larger", "not distinguishable"}


def test_the_url_holds_sweep_filters_baseline_and_metric(demo_db, monkeypatch):
    at = open_page(monkeypatch, demo_db, "sweep", sweep="dash", metric="ttft_p90_ms",
                   baseline="nano-sync", latency="ttft_p50_ms", max_num_seqs=["4"],
                   variant=["nano", "nano-sync"])
    assert at.sidebar.selectbox(key="metric").value == "ttft_p90_ms"
    assert at.sidebar.selectbox(key="baseline").value == "nano-sync"
    assert at.sidebar.selectbox(key="latency").value == "ttft_p50_ms"
    assert at.sidebar.multiselect(key="filter max_num_seqs").value == [4]
    assert at.sidebar.multiselect(key="filter variant").value == ["nano", "nano-sync"]
    table = at.dataframe[0].value
    assert len(table) == 4 and "TTFT p90 (ms)" in table.columns and not at.warning
    # Each change goes back into the URL; defaults are left out of it.
    at.sidebar.multiselect(key="filter max_num_seqs").set_value([2, 4]).run()
    assert at.query_params["max_num_seqs"] == ["2", "4"]
    at.sidebar.selectbox(key="baseline").set_value("nano").run()
    assert "baseline" not in at.query_params and at.query_params["sweep"] == "dash"
    # Another sweep: its own defaults, none of the first one's filters.
    at.sidebar.selectbox(key="sweep_pick").set_value("dash-other").run()
    assert at.query_params == {"sweep": "dash-other", "metric": "ttft_p90_ms",
                               "latency": "ttft_p50_ms"}
    assert at.sidebar.selectbox(key="baseline").value == "nano"


def test_unknown_url_values_fall_back_with_a_note_as_text(synth_db, monkeypatch):
    at = open_page(monkeypatch, synth_db, "sweep", sweep="phase2-000", metric=CRAFTED,
                   baseline=CRAFTED, variant=CRAFTED)
    notes = [w.value for w in at.warning]
    assert len(notes) == 3
    for shown in notes:
        assert "](" not in shown.replace("\\]", "") and "![" not in shown, shown
        assert "\\[click\\]" in shown, shown
    assert at.sidebar.selectbox(key="metric").value == "output_tok_s"
    assert at.sidebar.selectbox(key="baseline").value == "nano"
    assert at.sidebar.multiselect(key="filter variant").value == []
    assert at.query_params == {"sweep": "phase2-000"}  # the crafted values are gone


def test_results_without_the_metric_show_as_missing(synth_db, monkeypatch):
    """The synthetic results carry no latencies (as vllm without latency_metrics): a latency
    metric has no figure anywhere, never a 0."""
    at = open_page(monkeypatch, synth_db, "sweep", sweep="phase2-000", metric="ttft_p50_ms")
    table = at.dataframe[0].value
    assert table["TTFT p50 (ms)"].isna().all() and (table["n"] == 0).all()
    assert set(table["note"]) == {"no TTFT p50 measured"}
    assert "have no TTFT p50 figure" in texts(at.caption)
    heat = charts(at)[0]
    assert {r["text"] for r in heat["rows"]} == {"—"}
    assert "No configuration here has a TPOT p50 figure" in texts(at.info)
