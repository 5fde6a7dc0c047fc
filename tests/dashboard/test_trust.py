"""The Sweep, Sweeps, Compare and Job pages on databases whose figures the test chooses
(recorded through the coordinator's own path, tests/db/read/recorded.py): a winner is
crowned only where it is distinguishable, renamed variants show their new names, jobs of an
earlier sweep file are left out, a lost coordinator is named, a result whose GPU throttled
is marked and its telemetry drawn."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from db.models import Job, Sweep, utcnow
from db.store import STALE_AFTER, Store
from tests.dashboard.pages import charts, open_page, texts
from tests.db.read.recorded import record, run_all, sweep_text

CLEAR = {("base", 0): 100.0, ("base", 1): 110.0, ("base", 2): 90.0,
         ("fast", 0): 200.0, ("fast", 1): 220.0, ("fast", 2): 180.0}
CLOSE = {("base", 0): 100.0, ("base", 1): 130.0, ("base", 2): 70.0,
         ("fast", 0): 104.0, ("fast", 1): 134.0, ("fast", 2): 74.0}


def recorded(tmp_path, figures, **kw) -> tuple[str, Store, list]:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    store = Store(url)
    planned = record(store, sweep_text(**kw))
    run_all(store, planned, figures)
    return url, store, planned


def test_a_distinguishable_winner_is_crowned(tmp_path, monkeypatch):
    url, _, _ = recorded(tmp_path, CLEAR)
    at = open_page(monkeypatch, url, "sweep", sweep="s")
    banner = at.success[0].value.replace("\\", "")  # as rendered: escapes gone
    assert "Best configuration: fast" in banner and "2.00× (1.59–2.52×) faster" in banner
    table = at.dataframe[0].value.set_index("variant")
    assert table.loc["fast", "speedup (95% interval)"] == "2.00× (1.59–2.52×) faster"
    assert table.loc["fast", "verdict"] == "faster"


def test_no_winner_where_the_data_cannot_tell(tmp_path, monkeypatch):
    url, _, _ = recorded(tmp_path, CLOSE)
    at = open_page(monkeypatch, url, "sweep", sweep="s")
    assert not at.success
    banner = texts(at.info)
    assert "No single best configuration at this n" in banner and "base" in banner
    table = at.dataframe[0].value.set_index("variant")
    assert table.loc["fast", "verdict"] == "not distinguishable"
    at = open_page(monkeypatch, url, "compare", a="s", variant_a="base", variant_b="fast")
    cmp = at.dataframe[0].value
    assert cmp["verdict"].tolist() == ["not distinguishable"]
    low, high = cmp["95% interval"].iloc[0].rstrip("×").split("–")
    assert float(low) < 1 < float(high)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["B distinguishably faster in"] == "0 of 1"


def test_one_repeat_has_no_spread_and_no_winner(tmp_path, monkeypatch):
    url, _, _ = recorded(tmp_path, {"base": 100.0, "fast": 300.0}, repeats=1)
    at = open_page(monkeypatch, url, "sweep", sweep="s")
    assert not at.success and "No single best configuration" in texts(at.info)
    table = at.dataframe[0].value
    assert (table["CV"] == "n=1, no spread").all()
    assert (table["± 95% CI"] == "n=1, no spread").all()
    assert "None" not in table.astype(str).to_string()


def test_renamed_variants_and_an_edited_matrix(tmp_path, monkeypatch):
    url, store, _ = recorded(tmp_path, CLEAR, matrix="{max_num_seqs: [4, 8]}")
    record(store, sweep_text(variants="  ref: {kind: hf}\n  quick: {kind: hf, options: "
                                      "{attn_implementation: eager}}",
                             matrix="{max_num_seqs: [4]}", baseline="ref"))
    at = open_page(monkeypatch, url, "sweep", sweep="s")
    table = at.dataframe[0].value
    assert set(table["variant"]) == {"ref", "quick"} and set(table["max_num_seqs"]) == {4}
    assert table.set_index("variant").loc["quick", "verdict"] == "faster"
    assert "Best configuration: quick" in at.success[0].value
    assert "6 result(s) of jobs no longer in the sweep file" in texts(at.caption)
    sweeps = open_page(monkeypatch, url).dataframe[0].value.set_index("name")
    assert sweeps.loc["s", "total"] == 6


def test_a_lost_coordinator_is_named_on_every_page(tmp_path, monkeypatch):
    url, store, planned = recorded(tmp_path, {"base": 100.0}, repeats=1,
                                   variants="  base: {kind: hf}")
    extra = record(store, sweep_text(variants="  base: {kind: hf}", repeats=2))
    with store.session() as s:
        job_id = s.scalar(select(Job.id).where(Job.key == extra[-1].key))
        s.execute(update(Sweep).values(owner="h:1", heartbeat_at=utcnow() - STALE_AFTER
                                       - timedelta(minutes=9)))
    store.start_attempt(job_id, "h", "0")
    at = open_page(monkeypatch, url)
    row = at.dataframe[0].value.set_index("name").loc["s"]
    assert row["state"] == "lost" and row["note"] == "coordinator lost 10 min ago"
    at = open_page(monkeypatch, url, "sweep", sweep="s")
    assert "coordinator lost 10 min ago" in texts(at.markdown)
    assert {m.label: m.value for m in at.metric}["unknown"] == "1"
    at = open_page(monkeypatch, url, "job", job=job_id)
    attempts = at.dataframe[0].value
    assert attempts["outcome"].tolist() == ["unknown (coordinator lost)"]
    assert attempts["duration_s"].isna().all()
    assert "its coordinator is lost" in at.warning[0].value


def test_the_job_page_draws_the_gpu_telemetry_and_marks_a_throttled_result(
        tmp_path, monkeypatch):
    from engine.gpu_telemetry import Reading, Telemetry
    from tests.engine.test_result import make

    url, store, planned = recorded(tmp_path, CLEAR)
    with store.session() as s:
        job_id = s.scalar(select(Job.id).where(Job.key == planned[0].key))
    tel = Telemetry(1.0, done_s=9.5)
    for t in range(11):
        tel.add(float(t), Reading(gpu_pct=95 if t > 6 else 3, power_w=300.0, sm_mhz=1700,
                                  temp_c=60 + t, throttle=0x4 | 0x40 if t == 8 else 0x1), others=0)
    attempt = store.start_attempt(job_id, "h", "0")
    store.finish_attempt(attempt, "succeeded", job_state="succeeded", telemetry=tel,
                         result=make(output_tokens=100, elapsed_s=3.0, load_s=4.0,
                                     env={"gpu": {"name": "H100"}}))
    at = open_page(monkeypatch, url, "job", job=job_id)
    # As rendered: the escapes that keep it literal text gone.
    assert "GPU mark: throttled (hw_thermal)" in texts(at.warning).replace("\\", "")
    spec = next(c for c in charts(at) if "vconcat" in c)
    titles = [p["layer"][1]["encoding"]["y"]["title"] for p in spec["vconcat"]]
    assert titles[:2] == ["GPU busy %", "power W"]
    rows = {r["phase"]: (r["start"], r["end"]) for rs in spec["datasets_rows"] for r in rs
            if "phase" in r}
    assert rows == {"engine start": (2.5, 6.5), "generate": (6.5, 9.5)}
    caption = texts(at.caption).replace("\\", "")
    assert "timed generate: 3 sample(s)" in caption
    assert "clock reasons: sw_power_cap, hw_thermal" in caption
    # The first attempt (no telemetry) says why there is none.
    at.selectbox(key="gpu_attempt").select(1).run()
    assert "Attempt 1 has no GPU telemetry" in texts(at.caption)
    # The Sweep page's table marks the configuration.
    at = open_page(monkeypatch, url, "sweep", sweep="s")
    table = at.dataframe[0].value.set_index("variant")
    assert table.loc["base", "GPU mark"] == "1 of 3: throttled (hw_thermal)"
    assert table.loc["fast", "GPU mark"] == ""
