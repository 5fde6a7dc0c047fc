"""db/read/profiles.py on a real database (SQLite and PostgreSQL): results with step
profiles and a roofline stored through the Store, read back by category."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import select

from db.models import Result
from db.read.profiles import category_changes, profiled_steps, step_categories
from db.read.results import results_frame
from db.store import Store
from engine.kernel_categories import CATEGORIES
from tests.db.read.recorded import finish, record, sweep_text
from tests.engine.test_result import profiled


def test_profiles_stored_and_compared_by_category(db_url: str) -> None:
    store = Store(db_url)
    planned = record(store, sweep_text(repeats=2))
    base = profiled()
    steps = base.step_profiles
    # B's decode step spends half A's time in attention; one of A's results has no profile.
    faster = dataclasses.replace(steps[1], categories_s={"gemm": 0.0015, "attention": 0.00025})
    for p in planned:
        if p.job.variant == "base" and p.job.repeat == 1:
            finish(store, p.key, 50.0)
            continue
        mine = steps if p.job.variant == "base" else [steps[0], faster]
        finish(store, p.key, 50.0, roofline=base.roofline, step_profiles=mine)
    with store.session() as s:
        floors = sorted(s.scalars(select(Result.floor_s)), key=lambda f: f is None)
    assert floors[:3] == [pytest.approx(0.5)] * 3 and floors[3] is None

    df = profiled_steps(store, "s")
    assert len(df) == 3 * 2 * len(CATEGORIES)  # three profiled results, two steps each
    a, b = df[df["variant"] == "base"], df[df["variant"] == "fast"]
    changes = category_changes(a, b).set_index(["step", "category"])
    assert changes.loc[("decode", "attention"), "a_s"] == pytest.approx(0.0005)
    assert changes.loc[("decode", "attention"), "b_s"] == pytest.approx(0.00025)
    assert changes.loc[("decode", "attention"), "delta_s"] == pytest.approx(-0.00025)
    assert changes.loc[("decode", "gemm"), "ratio"] == pytest.approx(1.0)
    assert changes.loc[("prefill", "norm"), "delta_s"] == 0.0
    assert list(changes.index.get_level_values(0)[:2]) == ["prefill", "prefill"]
    assert results_frame(store, "s")["percent_of_floor"].dropna().tolist() == \
        [pytest.approx(0.5 / 2.0 * 100)] * 3
    store.close()


def test_step_categories_shares() -> None:
    frame = step_categories(profiled().step_profiles)
    prefill = frame[frame["step"] == "prefill"].set_index("category")
    assert prefill.loc["gemm", "share"] == pytest.approx(0.8)
    assert prefill["share"].sum() == pytest.approx(1.0)
    assert step_categories(None).empty
