"""The Job page's roofline and kernel categories, and the Compare page's category changes,
through AppTest on a real SQLite file whose results carry step profiles."""

from __future__ import annotations

import dataclasses

import pytest

from db.read.jobs import sweep_jobs
from db.store import Store
from tests.dashboard.pages import charts, open_page
from tests.db.read.recorded import finish, record, sweep_text
from tests.engine.test_result import profiled


@pytest.fixture
def profiled_db(tmp_path) -> str:
    """Sweep s: variants base and fast, one result each with step profiles; fast's decode
    step spends half base's time in attention."""
    url = f"sqlite:///{tmp_path / 'p.db'}"
    store = Store(url)
    base = profiled()
    prefill, decode = base.step_profiles
    faster = dataclasses.replace(decode, categories_s={"gemm": 0.0015, "attention": 0.00025})
    for p in record(store, sweep_text(repeats=1)):
        steps = [prefill, decode] if p.job.variant == "base" else [prefill, faster]
        finish(store, p.key, 50.0, roofline=base.roofline, step_profiles=steps,
               prefill_s=0.5, decode_s=1.25)
    store.close()
    return url


def test_job_page_shows_roofline_and_categories(profiled_db, monkeypatch):
    store = Store(profiled_db, upgrade=False)
    job_id = int(sweep_jobs(store, "s")["job_id"].iloc[0])
    store.close()
    at = open_page(monkeypatch, profiled_db, "job", job=job_id)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["percent of floor"] == "25%" and metrics["floor"] == "0.50 s"
    table = next(d.value for d in at.dataframe if "category" in d.value)
    decode = table[table["step"] == "decode"].set_index("category")
    assert decode.loc["attention", "ms"] == pytest.approx(0.5)
    bars = [c for c in charts(at) if c.get("encoding", {}).get("color", {}).get("field")
            == "category"]
    assert bars and {r["category"] for r in bars[0]["rows"]} == {"gemm", "attention"}


def test_compare_page_shows_where_b_gains(profiled_db, monkeypatch):
    at = open_page(monkeypatch, profiled_db, "compare", a="s", variant_a="base",
                   variant_b="fast")
    table = next(d.value for d in at.dataframe if "B - A ms" in d.value)
    row = table[(table["step"] == "decode") & (table["category"] == "attention")].iloc[0]
    assert row["A ms"] == pytest.approx(0.5) and row["B - A ms"] == pytest.approx(-0.25)
    prefill = table[table["step"] == "prefill"]
    assert (prefill["B - A ms"] == 0).all()
