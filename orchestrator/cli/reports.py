"""What `orchestrate status`, `results` and `sweep --dry-run` print, as Reports
(cli/output.py renders them as a table, JSON, CSV or Markdown). Each configuration column
is an axis that changes a job's key: variant, the sweep's option axes, max_num_seqs,
gpu_memory_utilization, max_model_len."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

from orchestrator.cli.common import when
from orchestrator.cli.output import Column, Report

SUMMARY_FIELDS = ["variant", "engine", "options", "model", "workload", "workload_fingerprint",
                  "max_num_seqs", "gpu_memory_utilization", "max_model_len", "gpu_name", "n",
                  "tok_s_mean", "tok_s_std", "ci95", "cv", "noisy", "elapsed_s_mean",
                  "ttft_p50_ms_mean", "tpot_p50_ms_mean", "percent_of_floor_mean", "disturbed",
                  "gpu_mark"]
# The report is of output tok/s (summarize's default metric): its fields keep the names they
# had before the summary could be of any metric.
_SUMMARY_COLUMNS = {"tok_s_mean": "mean", "tok_s_std": "std"}


def _percent(v) -> str:
    """The roofline's floor as a share of the time measured; empty where there is none."""
    return "" if v is None or math.isnan(v) else f"{v:.0f}%"


def _g(v) -> str:
    return f"{v:g}"


def _mml(v) -> str:
    return "default" if v is None or (isinstance(v, float) and math.isnan(v)) else str(int(v))


def _opts(v: str | dict) -> str:
    if isinstance(v, dict):
        v = json.dumps(v, sort_keys=True) if v else "{}"
    return "" if v == "{}" else v


def _axis_columns(axes) -> list[Column]:
    from db.read.job_columns import OPTION_PREFIX

    return [Column(a, lambda r, a=a: str(r.get(OPTION_PREFIX + a, ""))) for a in axes]


def plan_report(spec, planned) -> Report:
    """The dry run: every job of the sweep file with its key."""
    from db.read.job_columns import OPTION_PREFIX
    from orchestrator.spec import CORE_AXES

    axes = [a for a in spec.file.matrix if a not in CORE_AXES]
    rows = [{"ordinal": p.ordinal, "variant": p.job.variant, "engine": p.job.engine,
             "options": json.dumps(p.job.options, sort_keys=True),
             **{OPTION_PREFIX + a: p.job.options.get(a, "default") for a in axes},
             "max_num_seqs": p.job.max_num_seqs,
             "gpu_memory_utilization": p.job.gpu_memory_utilization,
             "max_model_len": p.job.max_model_len, "repeat": p.job.repeat, "key": p.key}
            for p in planned]
    cols = [Column("#", lambda r: str(r["ordinal"]), True),
            Column("variant", lambda r: r["variant"]), Column("engine", lambda r: r["engine"]),
            Column("options", lambda r: _opts(r["options"])), *_axis_columns(axes),
            Column("max_num_seqs", lambda r: str(r["max_num_seqs"]), True),
            Column("gpu_mem", lambda r: _g(r["gpu_memory_utilization"]), True),
            Column("max_model_len", lambda r: _mml(r["max_model_len"]), True),
            Column("repeat", lambda r: str(r["repeat"]), True), Column("key", lambda r: r["key"])]
    note = (f"model {spec.model.label}, workload {spec.workload.name} (fingerprint "
            f"{spec.fingerprint}), baseline {spec.baseline}")
    return Report("jobs", f"{spec.name}: {len(planned)} jobs (dry run, nothing written)", cols,
                  rows, [note])


def results_report(sweep: str, summary, baseline: str | None, hidden: int) -> Report:
    """One row per configuration: mean, spread, 95% interval, speedup with its interval."""
    from db.read.job_columns import OPTION_PREFIX
    from db.read.results import SPEEDUP_FIELDS, speedup_text, spread_text
    from db.read.telemetry import MARK_COLUMN, MARK_TITLE

    axes = [c.removeprefix(OPTION_PREFIX) for c in summary.columns
            if c.startswith(OPTION_PREFIX)]
    fields = [*SUMMARY_FIELDS[:3], *(OPTION_PREFIX + a for a in axes), *SUMMARY_FIELDS[3:],
              *SPEEDUP_FIELDS]
    rows = [{k: r[_SUMMARY_COLUMNS.get(k, k)] for k in fields} for _, r in summary.iterrows()]
    cols = [Column("variant", lambda r: r["variant"]),
            Column("options", lambda r: _opts(r["options"])), *_axis_columns(axes),
            Column("max_num_seqs", lambda r: str(r["max_num_seqs"]), True),
            Column("gpu_mem", lambda r: _g(r["gpu_memory_utilization"]), True),
            Column("max_model_len", lambda r: _mml(r["max_model_len"]), True),
            Column("card", lambda r: str(r["gpu_name"])),
            Column("n", lambda r: str(r["n"]), True),
            Column("tok/s", lambda r: f"{r['tok_s_mean']:,.1f}", True),
            Column("± std", lambda r: "" if r["n"] < 2 else f"{r['tok_s_std']:,.1f}", True),
            Column("95% CI", lambda r: "" if r["n"] < 2 else f"±{r['ci95']:,.0f}", True),
            Column("CV", lambda r: spread_text(r) + (" noisy" if r["noisy"] else ""), True,
                   lambda r: "yellow" if r["noisy"] else ""),
            Column("elapsed s", lambda r: f"{r['elapsed_s_mean']:.2f}", True),
            Column("% of floor", lambda r: _percent(r["percent_of_floor_mean"]), True),
            Column("disturbed", lambda r: r["disturbed"], False,
                   lambda r: "yellow" if r["disturbed"] else ""),
            Column(MARK_TITLE, lambda r: r[MARK_COLUMN], False,
                   lambda r: "yellow" if r[MARK_COLUMN] else ""),
            Column("speedup (95% interval)", lambda r: speedup_text(r), True,
                   lambda r: {"faster": "green", "slower": "red"}.get(r["verdict"], ""))]
    return Report("results", f"{sweep}: output tokens/s, speedup vs {baseline}", cols, rows,
                  _hidden_notes(hidden, sweep, "results of jobs"))


def _hidden_notes(hidden: int, sweep: str, what: str) -> list[str]:
    """The footer line of what a report leaves out: `what` says whose jobs are gone."""
    return [f"{sweep}: {hidden} {what} no longer in the sweep file hidden (--all shows them)"] \
        if hidden else []


def _running(r, now) -> dict:
    """A sweep's jobs marked running: `unknown` where its coordinator is lost."""
    from db.read.sweeps import LOST

    lost = r.state(now) == LOST
    return {"running": 0 if lost else r.counts.running,
            "unknown": r.counts.running if lost else 0}


def status_reports(rows, running, failed) -> list[Report]:
    """The sweeps with their job counts and duration (the sum of their coordinators'
    runs); the attempts marked running; one sweep's failed jobs."""
    now = datetime.now(UTC)
    sweeps = [{"sweep": r.name, "state": r.state_text(now), "jobs": r.counts.total,
               "pending": r.counts.pending, **_running(r, now),
               "succeeded": r.counts.succeeded, "failed": r.counts.failed,
               "coordinator": r.owner, "last_run": r.last_started_at,
               "duration_s": r.duration_s(now), "runs": len(r.runs),
               "duration": r.duration_text(now), "hidden": r.hidden}
              for r in rows]
    cols = [Column("sweep", lambda r: r["sweep"]),
            Column("state", lambda r: r["state"],
                   style=lambda r: "yellow" if r["state"].startswith("coordinator lost")
                   else ""),
            *(Column(k, lambda r, k=k: str(r[k]), True) for k in ("jobs", "pending")),
            Column("running", lambda r: f"{r['unknown']} unknown" if r["unknown"]
                   else str(r["running"]), True),
            Column("succeeded", lambda r: str(r["succeeded"]), True),
            Column("failed", lambda r: str(r["failed"]), True,
                   lambda r: "red" if r["failed"] else ""),
            Column("coordinator", lambda r: r["coordinator"] or ""),
            Column("last run", lambda r: when(r["last_run"])),
            Column("duration", lambda r: r["duration"], True)]
    notes = [n for r in rows for n in _hidden_notes(r.hidden, r.name, "jobs")]
    out = [Report("sweeps", "sweeps", cols, sweeps, notes)]
    if running:
        att = [{"sweep": a.sweep, "job_id": a.job_id, "variant": a.variant,
                "max_num_seqs": a.max_num_seqs,
                "gpu_memory_utilization": a.gpu_memory_utilization,
                "max_model_len": a.max_model_len, "repeat": a.repeat, "attempt": a.number,
                "host": a.host, "gpu": a.gpu, "state": a.state, "started_at": a.started_at,
                "elapsed_s": None if a.lost_for is not None
                else (now - a.started_at).total_seconds()}
               for a in running]
        out.append(Report("running", "running", [
            Column("sweep", lambda r: r["sweep"]), Column("variant", lambda r: r["variant"]),
            Column("max_num_seqs", lambda r: str(r["max_num_seqs"]), True),
            Column("gpu_mem", lambda r: _g(r["gpu_memory_utilization"]), True),
            Column("max_model_len", lambda r: _mml(r["max_model_len"]), True),
            Column("repeat", lambda r: str(r["repeat"]), True),
            Column("attempt", lambda r: str(r["attempt"]), True),
            Column("host", lambda r: r["host"]), Column("gpu", lambda r: r["gpu"]),
            Column("state", lambda r: r["state"]),
            Column("elapsed", lambda r: "" if r["elapsed_s"] is None
                   else f"{r['elapsed_s']:.0f} s", True)], att))
    if failed:
        rows_f = [{"job_id": f.job_id, "variant": f.variant, "max_num_seqs": f.max_num_seqs,
                   "gpu_memory_utilization": f.gpu_memory_utilization,
                   "max_model_len": f.max_model_len, "repeat": f.repeat,
                   "error_kind": f.error_kind, "error": f.error} for f in failed]
        out.append(Report("failed", "failed jobs", [
            Column("job", lambda r: str(r["job_id"]), True),
            Column("variant", lambda r: r["variant"]),
            Column("max_num_seqs", lambda r: str(r["max_num_seqs"]), True),
            Column("gpu_mem", lambda r: _g(r["gpu_memory_utilization"]), True),
            Column("max_model_len", lambda r: _mml(r["max_model_len"]), True),
            Column("repeat", lambda r: str(r["repeat"]), True),
            Column("error", lambda r: f"{r['error_kind']}: {r['error']}",
                   style=lambda r: "red")], rows_f))
    return out
