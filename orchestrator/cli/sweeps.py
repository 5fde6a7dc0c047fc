"""Commands over sweeps: run one, its status, its results, export them, the dashboard."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from engine.errors import UserError
from orchestrator.cli.common import DbOpt, err, open_store, out
from orchestrator.cli.output import Format, FormatOpt, emit
from orchestrator.spec import MAX_JOBS
from orchestrator.stop_request import exit_code


def sweep(
    file: Annotated[Path, typer.Argument(help="Sweep file (YAML)")],
    db: DbOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the jobs; write nothing")]
    = False,
    rerun_failed: Annotated[bool, typer.Option("--rerun-failed",
                                               help="Run the failed jobs again")] = False,
    force: Annotated[bool, typer.Option("--force", help="Rerun every job, succeeded too")]
    = False,
    slots: Annotated[int | None, typer.Option(
        min=1, help="Concurrent jobs on a machine without GPUs",
        show_default="the sweep file's executor.slots, else 1")] = None,
    executor_flag: Annotated[str | None, typer.Option(
        "--executor", help="local | ssh | ray", show_default="the sweep file's, else local")]
    = None,
    hosts: Annotated[Path | None, typer.Option(
        "--hosts", help="ssh: inventory file",
        show_default="the sweep file's, $BENCHSWEEP_HOSTS, hosts.yaml")] = None,
    address: Annotated[str | None, typer.Option(help="ray: the cluster's address",
                                                show_default="the sweep file's")] = None,
    max_jobs: Annotated[int, typer.Option(
        "--max-jobs", min=1, help="Refuse a sweep that expands to more jobs (each costs the "
                                  "coordinator ~0.23 ms before any job runs)")] = MAX_JOBS,
) -> None:
    """Run a sweep: every job not yet succeeded, resuming where the last run stopped."""
    from orchestrator.executors.choose import executor_kind, executor_starter
    from orchestrator.spec import load

    spec = load(file, max_jobs=max_jobs)
    planned = spec.expand()
    if dry_run:
        _print_plan(spec, planned)
        return
    section = spec.file.executor
    kind = executor_kind(executor_flag, section)
    store = open_store(db)
    start_executor = executor_starter(kind, section, file, store, slots=slots, hosts=hosts,
                                      address=address,
                                      log=lambda m: err.print(m, highlight=False))
    summary = _run(spec, store, start_executor, rerun_failed, force)
    outcomes = ", ".join(f"{n} {o}" for o, n in sorted(summary.outcomes.items())) or "none"
    out.print(f"sweep [bold]{escape(spec.name)}[/]: {summary.total} jobs, {summary.skipped} "
              f"already done, attempts this run: {outcomes}"
              + (f"; {summary.recovered} attempts of a stopped run marked lost"
                 if summary.recovered else ""))
    if summary.stopped_by:  # exit as the signal's default action would: 128 + its number
        raise UserError(f"interrupted ({summary.stopped_by}): running jobs cancelled; run the "
                        f"same command again to resume",
                        exit_code(summary.stopped_by))
    if summary.failed_jobs:
        raise UserError(f"{summary.failed_jobs} job(s) failed; `orchestrate status {spec.name}` "
                   f"shows them, --rerun-failed runs them again")


def _run(spec, store, start_executor, rerun_failed: bool, force: bool):
    """Run the sweep with live progress: a Rich bar on a terminal; without one (a log, a
    pipe: where Rich would print nothing) one line per finished attempt."""
    from orchestrator.run import run_sweep

    if not out.is_terminal:
        return run_sweep(spec, store, start_executor, rerun_failed=rerun_failed, force=force,
                         on_attempt=_print_attempt)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[state]}"), TimeRemainingColumn())
    with Progress(*columns, console=out, transient=False) as progress:
        task = progress.add_task(spec.name, total=None, state="")

        def on_change(s, running: int) -> None:
            done = s.outcomes.get("succeeded", 0) + s.failed_jobs
            progress.update(task, total=s.total - s.skipped, completed=done,
                            state=f"running {running}, failed {s.failed_jobs}")

        return run_sweep(spec, store, start_executor, rerun_failed=rerun_failed, force=force,
                         on_change=on_change)


def attempt_line(job, outcome, now: datetime) -> str:
    """One finished attempt as a log line: time, job, outcome, tok/s (or why it failed),
    what may have disturbed the figure, and its GPU's mark (db/read/telemetry.py)."""
    from db.read.telemetry import MARK_TITLE, gpu_mark

    what = (f"{job.variant} max_num_seqs={job.max_num_seqs} "
            f"gpu_mem={job.gpu_memory_utilization:g} repeat={job.repeat}")
    r = outcome.result
    if r is not None:
        told = f"{outcome.outcome} {r.output_tok_s:,.1f} tok/s"
        if r.disturbed:
            told += f" (disturbed: {'; '.join(r.disturbed)})"
        if mark := gpu_mark(r, outcome.telemetry):
            told += f" ({MARK_TITLE}: {mark})"
    else:
        told = f"{outcome.outcome} {outcome.error_kind}: {outcome.error}"
    return f"{now:%Y-%m-%d %H:%M:%S} job {job.ordinal} {what}: {told}"


def _print_attempt(job, outcome) -> None:
    # print, not the Rich console: user text stays as it is, the line is never cut at 80
    print(attempt_line(job, outcome, datetime.now()), flush=True)


def _print_plan(spec, planned) -> None:
    from orchestrator.cli.reports import plan_report

    emit([plan_report(spec, planned)], Format.table, out)


AllOpt = Annotated[bool, typer.Option(
    "--all", help="Also the jobs only an earlier version of the sweep file had")]
BaselineOpt = Annotated[str | None, typer.Option(
    help="Variant the speedups are against [default: the sweep's baseline]")]


def status(sweep: Annotated[str | None, typer.Argument()] = None, db: DbOpt = None,
           every: AllOpt = False, fmt: FormatOpt = Format.table) -> None:
    """Sweeps, their jobs by state, the jobs running now; of one sweep its failed jobs and
    its efficiency (timed generate ÷ GPU time held) per variant and overall."""
    from db.read.jobs import failed_jobs, running_attempts
    from db.read.sweeps import sweep_rows
    from orchestrator.cli.reports import status_reports

    store = open_store(db, read_only=True)
    rows = sweep_rows(store, sweep, every=every)
    if sweep and not rows:
        raise UserError(f"no sweep named {sweep!r}")
    failed = failed_jobs(store, sweep, every=every) if sweep else []
    reports = status_reports(rows, running_attempts(store, sweep), failed)
    if sweep:
        from db.read.timeline import EFFICIENCY, attempt_bars, efficiency

        reports[0].notes += [f"{EFFICIENCY} {e.text()}"
                             for e in efficiency(attempt_bars(store, sweep, every=every))]
    emit(reports, fmt, out)


def _summary(store, sweep: str, baseline: str | None, every: bool):
    """A sweep's results summarized against `baseline` (default: the sweep's), the baseline
    used, and how many results of jobs no longer in its file were left out. A baseline the
    user named that has no results is an error."""
    from db.read.results import has_results, results_frame, summarize
    from db.read.sweeps import sweep_info

    info = sweep_info(store, sweep)
    if info is None:
        raise UserError(f"no sweep named {sweep!r}")
    df = results_frame(store, sweep, every=every)
    summary = summarize(df, baseline or info["baseline"])
    if baseline and not has_results(summary, baseline):
        known = sorted(set(summary["variant"])) if not summary.empty else []
        raise UserError(f"--baseline {baseline!r}: sweep {sweep} has no results for it"
                        + (f" (variants with results: {', '.join(known)})" if known else ""), 2)
    return summary, baseline or info["baseline"], df.attrs["hidden"]


def results(
    sweep: Annotated[str, typer.Argument()],
    db: DbOpt = None,
    baseline: BaselineOpt = None,
    every: AllOpt = False,
    fmt: FormatOpt = Format.table,
) -> None:
    """One row per configuration: mean over repeats, spread, 95% interval, and the speedup
    over the baseline with its 95% interval (Fieller) and verdict."""
    from orchestrator.cli.reports import results_report

    summary, baseline, hidden = _summary(open_store(db, read_only=True), sweep, baseline, every)
    if summary.empty and fmt is Format.table:
        out.print(f"sweep {escape(sweep)}: no results yet", highlight=False)
        return
    emit([results_report(sweep, summary, baseline, hidden)], fmt, out)


def export(
    sweep: Annotated[str, typer.Argument()],
    output: Annotated[Path, typer.Option("-o", "--output", help="File to write")],
    fmt: Annotated[str, typer.Option("--format", help="csv | json | parquet")] = "csv",
    db: DbOpt = None,
    baseline: BaselineOpt = None,
    every: AllOpt = False,
) -> None:
    """Every measurement of a sweep, one row per result, each with its configuration's
    speedup over the baseline, 95% interval and verdict."""
    from db.read.results import results_frame, with_speedups

    if fmt not in ("csv", "json", "parquet"):
        raise UserError(f"--format must be csv, json or parquet, not {fmt!r}", 2)
    store = open_store(db, read_only=True)
    summary, _, _ = _summary(store, sweep, baseline, every)
    df = with_speedups(results_frame(store, sweep, every=every), summary)
    try:
        with (open(output, "wb") if fmt == "parquet" else open(output, "w", newline="")) as f:
            if fmt == "csv":
                df.to_csv(f, index=False)
            elif fmt == "json":
                df.to_json(f, orient="records", date_format="iso", indent=1)
            else:
                df.to_parquet(f, index=False)
    except OSError as e:
        raise UserError(f"cannot write {output}: {e.strerror or e}") from None
    out.print(f"wrote {len(df)} results of {escape(sweep)} to {escape(str(output))}",
              highlight=False)


def dashboard(
    db: DbOpt = None,
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 for every interface")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8501,
) -> None:
    """Open the Streamlit dashboard over the database the coordinator writes (it may start
    before the first sweep creates it, and shows it once it does)."""
    import importlib.util
    import os

    from db.store import NoDatabase, resolve_url

    if importlib.util.find_spec("streamlit") is None:
        raise UserError("the dashboard needs streamlit: pip install '.[dashboard]'", 2)
    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"[bold yellow]warning:[/] the dashboard has no login: anyone who can reach "
                  f"{host}:{port} can read every result in the database", highlight=False,
                  soft_wrap=True)
    entry = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
    try:
        url = open_store(db, read_only=True).url
    except NoDatabase as e:  # the dashboard waits for it; it never creates one
        url = resolve_url(db)
        err.print(f"{escape(str(e))}: the dashboard shows it once a sweep creates it",
                  highlight=False, soft_wrap=True)
    env = dict(os.environ, BENCHSWEEP_DB=url)
    out.print(f"dashboard on http://{host}:{port} (Ctrl-C stops it)", highlight=False)
    cmd = [sys.executable, "-m", "streamlit", "run", str(entry), "--server.address", host,
           "--server.port", str(port), "--server.headless", "true",
           "--browser.gatherUsageStats", "false", "--theme.primaryColor", "#1c6dd0",
           # No Deploy button: the menu a reader of the results needs, not a developer's.
           "--client.toolbarMode", "viewer"]
    try:
        code = subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)

COMMANDS = (sweep, status, results, export, dashboard)
