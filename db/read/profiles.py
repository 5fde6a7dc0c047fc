"""Step profiles (a sweep's `profile: kernels`) as DataFrames: one result's steps by kernel
category, a sweep's profiled results, and where variant B's step time differs from A's,
category by category. Shared by the dashboard's Job and Compare pages."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import select

from db.models import Job, Result, Sweep
from db.read.results import results_frame
from db.store import Store
from engine.kernel_categories import CATEGORIES
from engine.result import BenchResult, StepProfile

STEP_COLUMNS = ["step", "category", "seconds"]


def step_categories(steps: list[StepProfile] | None) -> pd.DataFrame:
    """One row per profiled step and category (every category, 0 where it had no time), in
    CATEGORIES order: seconds a step, and the share of the step's busy time."""
    rows = [{"step": s.kind, "category": c, "seconds": s.categories_s.get(c, 0.0),
             "share": s.categories_s.get(c, 0.0) / s.busy_s if s.busy_s else 0.0}
            for s in steps or [] for c in CATEGORIES]
    return pd.DataFrame(rows, columns=[*STEP_COLUMNS, "share"])


def profiled_steps(store: Store, sweep: str) -> pd.DataFrame:
    """One row per profiled step and category of each result of the sweep that has step
    profiles, with the result's results_frame columns (config, variant, settings)."""
    df = results_frame(store, sweep)
    if df.empty:
        return pd.DataFrame(columns=["job_key", "config", "variant", *STEP_COLUMNS])
    with store.session() as s:
        records = dict(s.execute(
            select(Job.key, Result.record).join(Result, Result.job_id == Job.id)
            .join(Sweep, Sweep.id == Job.sweep_id).where(Sweep.name == sweep)).all())
    parts = []
    for row in df.itertuples(index=False):
        steps = step_categories(BenchResult.from_dict(records[row.job_key]).step_profiles)
        if not steps.empty:
            parts.append(steps.drop(columns="share").assign(
                job_key=row.job_key, config=row.config, variant=row.variant,
                max_num_seqs=row.max_num_seqs,
                gpu_memory_utilization=row.gpu_memory_utilization,
                max_model_len=row.max_model_len))
    if not parts:
        return pd.DataFrame(columns=["job_key", "config", "variant", *STEP_COLUMNS])
    return pd.concat(parts, ignore_index=True)


def category_changes(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Rows of profiled_steps for A and for B (their matching configurations) -> one row per
    step and category: the mean seconds a step of A and of B over their profiled results,
    B - A, and B / A (NaN where A spent none). Empty where either side has no profile."""
    if a.empty or b.empty:
        return pd.DataFrame(columns=["step", "category", "a_s", "b_s", "delta_s", "ratio"])

    def mean(side: pd.DataFrame) -> pd.Series:
        return side.groupby(["step", "category"], sort=False)["seconds"].mean()

    out = pd.concat([mean(a).rename("a_s"), mean(b).rename("b_s")], axis=1).fillna(0.0)
    out = out.reset_index()
    out["delta_s"] = out["b_s"] - out["a_s"]
    out["ratio"] = [bs / a_s if a_s else float("nan")
                    for a_s, bs in zip(out["a_s"], out["b_s"], strict=True)]
    order = {c: i for i, c in enumerate(CATEGORIES)}
    out["_o"] = [(s != "prefill", order.get(c, 99)) for s, c in zip(out["step"],
                                                                     out["category"],
                                                                     strict=True)]
    return out.sort_values("_o", kind="stable").drop(columns="_o").reset_index(drop=True)
