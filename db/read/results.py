"""Results as DataFrames: one row per measurement, and one row per configuration with
repeats aggregated. Shared by `orchestrate results/export` and the dashboard. A result's
record is read as the typed BenchResult it was written from."""

from __future__ import annotations

import json
import math

import pandas as pd
from sqlalchemy import select

from db.models import Attempt, Job, Result, Sweep
from db.store import Store
from engine.result import BenchResult

# The figures of a BenchResult that a results row carries besides the Result's columns.
RECORD_FIELDS = ("prompt_tokens", "requested_output_tokens", "load_s", "profile_s", "compile_s",
                 "capture_s", "warmup_s", "kv_tokens", "compile_cache_warm", "device")
CONFIG = ["variant", "engine", "options", "model", "workload", "workload_fingerprint",
          "max_num_seqs", "gpu_memory_utilization", "gpu_name"]
# What must match for two configurations' throughputs to be compared.
COMPARABLE = ["model", "workload_fingerprint", "max_num_seqs", "gpu_memory_utilization",
              "gpu_name"]
# Two-sided 95% Student t quantiles by degrees of freedom; 1.96 beyond the table.
_T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042]
CV_FLAG = 0.05


def results_frame(store: Store, sweep: str) -> pd.DataFrame:
    """One row per result of a sweep, in sweep order: the job's configuration, where it ran,
    the Result's figures and RECORD_FIELDS of its BenchResult."""
    with store.session() as s:
        rows = s.execute(
            select(Job, Result, Attempt)
            .join(Result, Result.job_id == Job.id)
            .join(Attempt, Attempt.id == Result.attempt_id)
            .join(Sweep, Sweep.id == Job.sweep_id)
            .where(Sweep.name == sweep)
            .order_by(Job.ordinal)
        ).all()
    return pd.DataFrame([_row(sweep, j, r, a) for j, r, a in rows], columns=None)


def _row(sweep: str, j: Job, r: Result, a: Attempt) -> dict:
    rec = BenchResult.from_dict(r.record)
    return {
        "sweep": sweep, "job_key": j.key, "variant": j.variant, "engine": j.engine,
        "options": json.dumps(j.options, sort_keys=True), "model": j.model,
        "workload": j.workload, "workload_fingerprint": j.workload_fingerprint,
        "max_num_seqs": j.max_num_seqs, "gpu_memory_utilization": j.gpu_memory_utilization,
        "repeat": j.repeat, "host": r.host, "gpu": a.gpu, "gpu_name": r.gpu_name,
        "output_tokens": r.output_tokens, "elapsed_s": r.elapsed_s,
        "output_tok_s": r.output_tok_s, "total_tok_s": r.total_tok_s, "start_s": r.start_s,
        "peak_memory_bytes": r.peak_memory_bytes,
        **{k: getattr(rec, k) for k in RECORD_FIELDS},
        "finished_at": a.finished_at,
    }


def t95(n: int) -> float:
    return _T95[n - 2] if 2 <= n <= len(_T95) + 1 else 1.96


def summarize(df: pd.DataFrame, baseline: str | None) -> pd.DataFrame:
    """One row per configuration: n, mean, std, CV and 95% interval of output tok/s, and the
    speedup over `baseline` measured on the same model, workload, settings and card."""
    if df.empty:
        return pd.DataFrame()
    g = df.groupby(CONFIG, sort=False, dropna=False)
    out = g["output_tok_s"].agg(["count", "mean", "std"]).reset_index()
    out = out.rename(columns={"count": "n", "mean": "tok_s_mean", "std": "tok_s_std"})
    out["tok_s_std"] = out["tok_s_std"].fillna(0.0)
    out["elapsed_s_mean"] = g["elapsed_s"].mean().values
    out["output_tokens"] = g["output_tokens"].mean().values
    out["start_s_mean"] = g["start_s"].mean().values
    out["cv"] = out["tok_s_std"] / out["tok_s_mean"]
    out["ci95"] = [t95(n) * sd / math.sqrt(n) if n > 1 else math.nan
                   for n, sd in zip(out["n"], out["tok_s_std"], strict=True)]
    out["noisy"] = out["cv"] > CV_FLAG
    speedup, why = [], []
    base = out[out["variant"] == baseline] if baseline else out.iloc[0:0]
    for _, row in out.iterrows():
        same = base
        for col in COMPARABLE:
            same = same[same[col] == row[col]]
        if baseline is None or base.empty:
            speedup.append(math.nan)
            why.append("no baseline results")
        elif same.empty:
            speedup.append(math.nan)
            why.append(_why_not(base, row))
        else:
            speedup.append(row["tok_s_mean"] / same["tok_s_mean"].iloc[0])
            why.append("")
    out["speedup"], out["speedup_note"] = speedup, why
    return out


def _why_not(base: pd.DataFrame, row: pd.Series) -> str:
    for col, label in (("model", "model"), ("workload_fingerprint", "workload"),
                       ("gpu_name", "card")):
        if not (base[col] == row[col]).any():
            return f"baseline has no result on this {label}"
    return "baseline has no result at these settings"
