"""Results as DataFrames: one row per measurement, and one row per configuration with
repeats aggregated. Shared by `orchestrate results/export` and the dashboard. A result's
record is read as the typed BenchResult it was written from.

A configuration is everything that changes a job's key (engine, options with the option
axes, model, workload, max_num_seqs, gpu_memory_utilization, max_model_len) plus the card
it ran on: repeats of one configuration aggregate, nothing else does. Variants go by their
names in the sweep file as it reads now (db/read/plan.py); results of jobs the current file
no longer has are left out unless asked for (`every`), and the frame says how many
(`df.attrs["hidden"]`)."""

from __future__ import annotations

import json
import math

import pandas as pd
from sqlalchemy import select

from db.models import Attempt, Job, Result, Sweep
from db.read import stats
from db.read.job_columns import OPTION_PREFIX, max_model_len, option_columns
from db.read.metrics import METRICS, OUTPUT_TOK_S, Metric
from db.read.plan import Plan, sweep_plan
from db.read.telemetry import MARK_COLUMN, gpu_mark, telemetry_of
from db.store import Store
from engine.gpu_telemetry import Telemetry
from engine.result import BenchResult

# The figures of a BenchResult that a results row carries besides the Result's columns.
RECORD_FIELDS = ("prompt_tokens", "requested_output_tokens", "imports_s", "load_s", "profile_s",
                 "compile_s", "capture_s", "warmup_s", "kv_tokens", "compile_cache_warm",
                 "device")
# Latency figures a results row carries in milliseconds, from the record's seconds; NaN where
# the engine reported none.
LATENCY_MS = {f"{kind}_p{q}_ms": f"{kind}_p{q}_s" for kind in ("ttft", "tpot")
              for q in (50, 90, 99)}
# Throughputs of the record's phases; NaN where the engine does not time its phases.
PHASE_TOK_S = ("prefill_tok_s", "decode_tok_s")
CONFIG = ["variant", "engine", "options", "model", "workload", "workload_fingerprint",
          "max_num_seqs", "gpu_memory_utilization", "max_model_len", "gpu_name"]
# What must match for two configurations' throughputs to be compared.
COMPARABLE = ["model", "workload_fingerprint", "max_num_seqs", "gpu_memory_utilization",
              "max_model_len", "gpu_name"]
CV_FLAG = 0.05
BASELINE = "baseline"  # the verdict of the baseline's own rows
MISSING = "—"  # a figure no result has, as a cell shows it
# The speedup figures summarize() adds, for readers that show them beside a row.
SPEEDUP_FIELDS = ["speedup", "speedup_low", "speedup_high", "verdict", "speedup_note"]


def results_frame(store: Store, sweep: str, *, every: bool = False) -> pd.DataFrame:
    """One row per result of a sweep, in sweep order: the job's configuration (its variant
    named as the current sweep file names it, a column per option axis, and `config`: the
    whole configuration as one string, to join a summary's rows on), where it ran, the
    Result's figures, and RECORD_FIELDS, LATENCY_MS and PHASE_TOK_S of its BenchResult. Only
    the current file's jobs unless `every`; attrs["hidden"] counts the results left out."""
    plan = sweep_plan(store, sweep) or Plan(None)
    with store.session() as s:
        rows = s.execute(
            select(Job, Result, Attempt)
            .join(Result, Result.job_id == Job.id)
            .join(Attempt, Attempt.id == Result.attempt_id)
            .join(Sweep, Sweep.id == Job.sweep_id)
            .where(Sweep.name == sweep)
            .order_by(Job.ordinal)
        ).all()
    kept = [(j, r, a) for j, r, a in rows if every or plan.current(j.key)]
    tel = telemetry_of(store, [a.id for _j, _r, a in kept])
    df = option_columns(pd.DataFrame([_row(sweep, plan, j, r, a, tel.get(a.id))
                                      for j, r, a in kept]), plan.option_axes)
    if not df.empty:
        df["config"] = [json.dumps(c, default=str) for c in df[CONFIG].values.tolist()]
    df.attrs["hidden"] = len(rows) - len(kept)
    return df


def _row(sweep: str, plan: Plan, j: Job, r: Result, a: Attempt,
         tel: Telemetry | None) -> dict:
    rec = BenchResult.from_dict(r.record)
    return {
        "sweep": sweep, "job_key": j.key, "variant": plan.name(j.key, j.variant),
        "engine": j.engine, "options": json.dumps(j.options, sort_keys=True), "model": j.model,
        "workload": j.workload, "workload_fingerprint": j.workload_fingerprint,
        "max_num_seqs": j.max_num_seqs, "gpu_memory_utilization": j.gpu_memory_utilization,
        "max_model_len": max_model_len(j.spec), "repeat": j.repeat,
        "current": plan.current(j.key), "host": r.host, "gpu": a.gpu, "gpu_name": r.gpu_name,
        "output_tokens": r.output_tokens, "elapsed_s": r.elapsed_s,
        "output_tok_s": r.output_tok_s, "total_tok_s": r.total_tok_s, "start_s": r.start_s,
        "peak_memory_bytes": r.peak_memory_bytes,
        # The roofline's floor as a share of the measured time (BenchResult.percent_of_floor).
        "percent_of_floor": math.nan if r.floor_s is None else 100 * r.floor_s / r.elapsed_s,
        **{k: getattr(rec, k) for k in RECORD_FIELDS},
        **{k: _ms(getattr(rec, s)) for k, s in LATENCY_MS.items()},
        **{k: _nan(getattr(rec, k)) for k in PHASE_TOK_S},
        "disturbed": "; ".join(rec.disturbed),  # empty: nothing seen that could bend it
        MARK_COLUMN: gpu_mark(rec, tel),  # empty: the GPU was the engine's alone, unthrottled
        "finished_at": a.finished_at,
    }


def _ms(seconds: float | None) -> float:
    return math.nan if seconds is None else seconds * 1000


def _nan(v: float | None) -> float:
    return math.nan if v is None else float(v)


def summarize(df: pd.DataFrame, baseline: str | None,
              metric: Metric = OUTPUT_TOK_S) -> pd.DataFrame:
    """One row per configuration: of `metric` (db/read/metrics.py), in its unit, n (the
    results that have it), mean, std, CV and 95% interval; the mean of every metric
    (`{key}_mean`: `output_tok_s_mean`, `ttft_p50_ms_mean`, ...; NaN where none has it); and
    the speedup in `metric` over `baseline` measured on the same model, workload, settings
    and card, with its 95% interval and verdict (db/read/stats.py). n = 1 has no std, CV or
    interval (NaN); n = 0 no mean either. attrs["metric"] names the metric.
    """
    if df.empty:
        return pd.DataFrame()
    df = df.assign(**{m.key: df[m.column].astype(float) / m.scale for m in METRICS.values()})
    g = df.groupby(CONFIG, sort=False, dropna=False)
    out = g[metric.key].agg(["count", "mean", "std"]).reset_index()
    out = out.rename(columns={"count": "n"})
    for m in METRICS.values():
        out[f"{m.key}_mean"] = g[m.key].mean().values
    out["elapsed_s_mean"] = g["elapsed_s"].mean().values
    out["output_tokens"] = g["output_tokens"].mean().values
    out["percent_of_floor_mean"] = g["percent_of_floor"].mean().values
    # How many of the configuration's results were taken while something could bend them,
    # and the first such reason.
    out["disturbed"] = g["disturbed"].agg(_disturbed).values
    out[MARK_COLUMN] = g[MARK_COLUMN].agg(_disturbed).values  # and of the GPU's marks
    for col in (c for c in df.columns if c.startswith(OPTION_PREFIX) or c == "config"):
        out[col] = g[col].first().values  # a function of `options`, so one value a group
    out["cv"] = out["std"] / out["mean"]
    out["ci95"] = [stats.mean_halfwidth(n, sd) for n, sd in zip(out["n"], out["std"],
                                                                 strict=True)]
    out["noisy"] = out["cv"].fillna(0) > CV_FLAG
    figures = _speedups(out, baseline, metric)
    for k, col in enumerate(SPEEDUP_FIELDS):
        out[col] = [f[k] for f in figures]
    out.attrs["metric"] = metric.key
    return out


def _disturbed(reasons: pd.Series) -> str:
    marked = [r for r in reasons if r]
    return f"{len(marked)} of {len(reasons)}: {marked[0]}" if marked else ""


def sample(row) -> stats.Sample:
    """A summary row's figure (a Series or a record) as stats reads it."""
    return stats.Sample(int(row["n"]), float(row["mean"]), float(row["std"]))


def _speedups(out: pd.DataFrame, baseline: str | None, metric: Metric) -> list[tuple]:
    """SPEEDUP_FIELDS of each summary row. Plain records, not frame filters: a sweep's
    hundred configurations each filtering the wide summary took most of a page's second."""
    axes = [c for c in out.columns if c.startswith(OPTION_PREFIX)]
    rows = out[["variant", *COMPARABLE, *axes, "n", "mean", "std"]].to_dict("records")
    base = [r for r in rows if baseline and r["variant"] == baseline]
    return [_speedup(row, base, baseline, axes, metric) for row in rows]


def _same(a, b) -> bool:
    return a == b or (pd.isna(a) and pd.isna(b))


def _speedup(row: dict, base: list[dict], baseline: str | None, axes: list[str],
             metric: Metric) -> tuple:
    nothing = (math.nan, math.nan, math.nan, "")
    if not row["n"]:
        return (*nothing, f"no {metric.label} measured")
    if not base:
        return (*nothing, "no baseline results")
    if row["variant"] == baseline:
        return 1.0, math.nan, math.nan, BASELINE, ""
    same = [b for b in base if all(_same(b[c], row[c]) for c in COMPARABLE)]
    if not same:
        return (*nothing, _why_not(base, row))
    alike = [b for b in same if all(b[a] == row[a] for a in axes)]
    if not alike and len(same) > 1:
        return (*nothing, "baseline has several configurations at these settings")
    against = (alike or same)[0]
    if not against["n"]:
        return (*nothing, f"baseline has no {metric.label} at these settings")
    s = metric.speedup(sample(row), sample(against))
    note = "" if s.measured else f"n={min(row['n'], against['n'])}, {stats.NO_SPREAD}"
    return s.ratio, s.low, s.high, s.verdict, note


def _why_not(base: list[dict], row: dict) -> str:
    for col, label in (("model", "model"), ("workload_fingerprint", "workload"),
                       ("gpu_name", "card")):
        if not any(b[col] == row[col] for b in base):
            return f"baseline has no result on this {label}"
    return "baseline has no result at these settings"


def with_speedups(df: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """Results rows, each with its configuration's SPEEDUP_FIELDS from `summary`."""
    if df.empty or summary.empty:
        return df
    return df.merge(summary[["config", *SPEEDUP_FIELDS]], on="config", how="left")


def has_results(summary: pd.DataFrame, variant: str) -> bool:
    return not summary.empty and bool((summary["variant"] == variant).any())


def speedup_text(row: pd.Series) -> str:
    """A summary row's speedup as one cell: `1.12× (0.88–1.47×) not distinguishable`,
    `1.00× baseline`, or why there is none."""
    if row["verdict"] == BASELINE:
        return f"1.00× {BASELINE}"
    if math.isnan(row["speedup"]):
        return row["speedup_note"]
    if row["speedup_note"]:
        return f"{row['speedup']:.2f}× ({row['speedup_note']})"
    interval = stats.Speedup(row["speedup"], row["speedup_low"], row["speedup_high"],
                             row["verdict"]).interval_text()
    return f"{row['speedup']:.2f}× ({interval}) {row['verdict']}"


def spread_text(row: pd.Series) -> str:
    """A summary row's CV as one cell: `4.1%`, `n=1, no spread`, or `—` where no result
    has the figure."""
    if not row["n"]:
        return MISSING
    if row["n"] < 2:
        return f"n=1, {stats.NO_SPREAD}"
    return f"{row['cv'] * 100:.1f}%"
