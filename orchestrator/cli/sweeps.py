"""Commands over sweeps: run one, its status, its results, export them, the dashboard."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.text import Text

from engine.errors import UserError
from orchestrator.cli.common import DbOpt, err, open_store, out, when
from orchestrator.cli.common import TextTable as Table
from orchestrator.spec import MAX_JOBS


def sweep(
    file: Annotated[Path, typer.Argument(help="Sweep file (YAML)")],
    db: DbOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the jobs; write nothing")]
    = False,
    rerun_failed: Annotated[bool, typer.Option("--rerun-failed")] = False,
    force: Annotated[bool, typer.Option("--force", help="Rerun every job, succeeded too")]
    = False,
    slots: Annotated[int | None, typer.Option(min=1, help="Concurrent jobs on a machine "
                                                        "without GPUs")] = None,
    executor_flag: Annotated[str | None, typer.Option(
        "--executor", help="local | ssh | ray [default: the sweep file's, else local]")] = None,
    hosts: Annotated[Path | None, typer.Option(
        "--hosts", help="ssh: inventory file [default: the sweep file's, $BENCHSWEEP_HOSTS, "
                        "hosts.yaml]")] = None,
    address: Annotated[str | None, typer.Option(help="ray: the cluster's address")] = None,
    max_jobs: Annotated[int, typer.Option(
        "--max-jobs", min=1, help="Refuse a sweep that expands to more jobs (each costs the "
                                  "coordinator ~0.23 ms before any job runs) "
                                  f"[default: {MAX_JOBS}]")] = MAX_JOBS,
) -> None:
    """Run a sweep: every job not yet succeeded, resuming where the last run stopped."""
    from orchestrator.executors.choose import executor_kind, make_executor
    from orchestrator.spec import load

    spec = load(file, max_jobs=max_jobs)
    planned = spec.expand()
    if dry_run:
        _print_plan(spec, planned)
        return
    section = spec.file.executor
    kind = executor_kind(executor_flag, section)
    store = open_store(db)
    executor = make_executor(kind, section, file, store, slots=slots, hosts=hosts,
                             address=address, log=lambda m: err.print(m, highlight=False))
    try:
        summary = _run(spec, store, executor, rerun_failed, force)
    finally:
        executor.shutdown()
    outcomes = ", ".join(f"{n} {o}" for o, n in sorted(summary.outcomes.items())) or "none"
    out.print(f"sweep [bold]{escape(spec.name)}[/]: {summary.total} jobs, {summary.skipped} "
              f"already done, attempts this run: {outcomes}"
              + (f"; {summary.recovered} attempts of a stopped run marked lost"
                 if summary.recovered else ""))
    if summary.stopped_by:  # exit as the signal's default action would: 128 + its number
        raise UserError(f"interrupted ({summary.stopped_by}): running jobs cancelled; run the "
                        f"same command again to resume",
                        128 + signal.Signals[summary.stopped_by].value)
    if summary.failed_jobs:
        raise UserError(f"{summary.failed_jobs} job(s) failed; `orchestrate status {spec.name}` "
                   f"shows them, --rerun-failed runs them again")


def _run(spec, store, executor, rerun_failed: bool, force: bool):
    from orchestrator.run import run_sweep

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[state]}"), TimeRemainingColumn())
    with Progress(*columns, console=out, transient=False) as progress:
        task = progress.add_task(spec.name, total=None, state="")

        def on_change(s, running: int) -> None:
            done = s.outcomes.get("succeeded", 0) + s.failed_jobs
            progress.update(task, total=s.total - s.skipped, completed=done,
                            state=f"running {running}, failed {s.failed_jobs}")

        return run_sweep(spec, store, executor, rerun_failed=rerun_failed, force=force,
                         on_change=on_change)


def _print_plan(spec, planned) -> None:
    table = Table(title=f"{spec.name}: {len(planned)} jobs (dry run, nothing written)")
    for col in ("#", "variant", "engine", "options", "max_num_seqs", "gpu_mem", "repeat", "key"):
        table.add_column(col)
    for p in planned:
        j = p.job
        table.add_row(str(p.ordinal), j.variant, j.engine, json.dumps(j.options) if j.options
                      else "", str(j.max_num_seqs), f"{j.gpu_memory_utilization:g}",
                      str(j.repeat), p.key)
    out.print(table)
    out.print(f"model {spec.model.label}, workload {spec.workload.name} "
              f"(fingerprint {spec.fingerprint}), baseline {spec.baseline}", markup=False)


def status(sweep: Annotated[str | None, typer.Argument()] = None, db: DbOpt = None) -> None:
    """Sweeps, their jobs by state, and the jobs running now."""
    from db.read.jobs import failed_jobs, running_attempts
    from db.read.sweeps import sweep_rows

    store = open_store(db, read_only=True)
    rows = sweep_rows(store, sweep)
    if sweep and not rows:
        raise UserError(f"no sweep named {sweep!r}")
    table = Table(title="sweeps")
    for col in ("sweep", "jobs", "pending", "running", "succeeded", "failed", "coordinator",
                "last run"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.name, str(r.counts.total), str(r.counts.pending), str(r.counts.running),
                      str(r.counts.succeeded),
                      Text(str(r.counts.failed), "red") if r.counts.failed else "0",
                      r.owner or "", when(r.last_started_at))
    out.print(table)
    running = running_attempts(store, sweep)
    if running:
        t = Table(title="running")
        for col in ("sweep", "variant", "max_num_seqs", "gpu_mem", "repeat", "attempt", "host",
                    "gpu", "elapsed"):
            t.add_column(col)
        now = datetime.now(UTC)
        for a in running:
            t.add_row(a.sweep, a.variant, str(a.max_num_seqs), f"{a.gpu_memory_utilization:g}",
                      str(a.repeat), str(a.number), a.host, a.gpu,
                      f"{(now - a.started_at).total_seconds():.0f} s")
        out.print(t)
    if sweep:
        for f in failed_jobs(store, sweep):
            out.print("[red]failed[/] " + escape(f"{f.variant} max_num_seqs={f.max_num_seqs} "
                      f"gpu_mem={f.gpu_memory_utilization:g} repeat={f.repeat}: "
                      f"{f.error_kind}: {f.error}"), highlight=False)


def results(
    sweep: Annotated[str, typer.Argument()],
    db: DbOpt = None,
    baseline: Annotated[str | None, typer.Option(help="Variant the speedups are against "
                                                      "[default: the sweep's baseline]")] = None,
) -> None:
    """One row per configuration: mean ± std over repeats, n, tok/s, speedup."""
    import math

    from db.read.results import results_frame, summarize
    from db.read.sweeps import sweep_info

    store = open_store(db, read_only=True)
    info = sweep_info(store, sweep)
    if info is None:
        raise UserError(f"no sweep named {sweep!r}")
    baseline = baseline or info["baseline"]
    summary = summarize(results_frame(store, sweep), baseline)
    if summary.empty:
        out.print(f"sweep {sweep}: no results yet", markup=False)
        return
    table = Table(title=f"{sweep}: output tokens/s, speedup vs {baseline}")
    for col in ("variant", "options", "max_num_seqs", "gpu_mem", "card", "n", "tok/s",
                "± std", "95% CI", "CV", "elapsed s", "speedup"):
        table.add_column(col, justify="right" if col not in ("variant", "options", "card")
                         else "left")
    for _, r in summary.iterrows():
        opts = "" if r["options"] == "{}" else r["options"]
        ci = "" if math.isnan(r["ci95"]) else f"±{r['ci95']:,.0f}"
        cv = Text.assemble(f"{r['cv'] * 100:.1f}%", (" noisy" if r["noisy"] else "", "yellow"))
        sp = r["speedup_note"] if math.isnan(r["speedup"]) else f"{r['speedup']:.2f}×"
        table.add_row(r["variant"], opts, str(r["max_num_seqs"]),
                      f"{r['gpu_memory_utilization']:g}", str(r["gpu_name"]), str(r["n"]),
                      f"{r['tok_s_mean']:,.1f}", f"{r['tok_s_std']:,.1f}", ci, cv,
                      f"{r['elapsed_s_mean']:.2f}", sp)
    out.print(table)


def export(
    sweep: Annotated[str, typer.Argument()],
    output: Annotated[Path, typer.Option("-o", "--output", help="File to write")],
    fmt: Annotated[str, typer.Option("--format", help="csv | json | parquet")] = "csv",
    db: DbOpt = None,
) -> None:
    """Every measurement of a sweep, one row per result."""
    from db.read.results import results_frame

    if fmt not in ("csv", "json", "parquet"):
        raise UserError(f"--format must be csv, json or parquet, not {fmt!r}", 2)
    store = open_store(db, read_only=True)
    if store.sweep_id(sweep) is None:
        raise UserError(f"no sweep named {sweep!r}")
    df = results_frame(store, sweep)
    try:
        if fmt == "csv":
            df.to_csv(output, index=False)
        elif fmt == "json":
            df.to_json(output, orient="records", date_format="iso", indent=1)
        else:
            df.to_parquet(output, index=False)
    except OSError as e:
        raise UserError(f"cannot write {output}: {e.strerror}") from None
    out.print(f"wrote {len(df)} results of {sweep} to {output}", markup=False)


def dashboard(
    db: DbOpt = None,
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 for every interface")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8501,
) -> None:
    """Open the Streamlit dashboard over the database the coordinator writes."""
    import importlib.util
    import os

    if importlib.util.find_spec("streamlit") is None:
        raise UserError("the dashboard needs streamlit: pip install '.[dashboard]'", 2)
    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"[bold yellow]warning:[/] the dashboard has no login: anyone who can reach "
                  f"{host}:{port} can read every result in the database", highlight=False,
                  soft_wrap=True)
    entry = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
    env = dict(os.environ, BENCHSWEEP_DB=open_store(db, read_only=True).url)
    out.print(f"dashboard on http://{host}:{port} (Ctrl-C stops it)", highlight=False)
    cmd = [sys.executable, "-m", "streamlit", "run", str(entry), "--server.address", host,
           "--server.port", str(port), "--server.headless", "true",
           "--browser.gatherUsageStats", "false", "--theme.primaryColor", "#1c6dd0"]
    try:
        code = subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)

COMMANDS = (sweep, status, results, export, dashboard)
