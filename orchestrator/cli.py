"""`orchestrate`: the command line. Every error a user can cause ends in one line on
stderr and a non-zero exit."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from engine.job import DEFAULT_GPU_MEMORY_UTILIZATION

app = typer.Typer(help="Benchmark sweeps of LLM inference engines.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
model_app = typer.Typer(help="Checkpoints with random weights of named architectures.",
                        no_args_is_help=True)
app.add_typer(model_app, name="model")
hosts_app = typer.Typer(help="Remote GPU hosts reached over SSH: inventory, checks, "
                             "provisioning.", no_args_is_help=True)
app.add_typer(hosts_app, name="hosts")
out = Console()
err = Console(stderr=True)

DbOpt = Annotated[str | None, typer.Option("--db", envvar="BENCHSWEEP_DB",
                                           help="Database URL or SQLite path "
                                                "[default: ./benchsweep.db]")]


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", markup=True, highlight=False, soft_wrap=True)
    return typer.Exit(code)


def open_store(db: str | None):
    from sqlalchemy.exc import OperationalError

    from db.store import SchemaError, Store

    try:
        return Store(db)
    except SchemaError as e:
        raise fail(str(e)) from None
    except OperationalError as e:
        raise fail(f"cannot open database: {str(e.orig).splitlines()[0]}") from None


@app.command()
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
    executor_kind: Annotated[str | None, typer.Option(
        "--executor", help="local | ssh | ray [default: the sweep file's, else local]")] = None,
    hosts: Annotated[Path | None, typer.Option(
        "--hosts", help="ssh: inventory file [default: the sweep file's, $BENCHSWEEP_HOSTS, "
                        "hosts.yaml]")] = None,
    address: Annotated[str | None, typer.Option(help="ray: the cluster's address")] = None,
) -> None:
    """Run a sweep: every job not yet succeeded, resuming where the last run stopped."""
    from orchestrator.spec import SpecError, load

    try:
        spec = load(file)
        planned = spec.expand()
    except SpecError as e:
        raise fail(str(e), 2) from None
    if dry_run:
        _print_plan(spec, planned)
        return
    if executor_kind not in (None, "local", "ssh", "ray"):
        raise fail(f"--executor must be local, ssh or ray, not {executor_kind!r}", 2)
    store = open_store(db)
    executor = _executor(spec, file, store, slots, executor_kind, hosts, address)
    try:
        summary = _run(spec, store, executor, rerun_failed, force)
    finally:
        executor.shutdown()
    outcomes = ", ".join(f"{n} {o}" for o, n in sorted(summary.outcomes.items())) or "none"
    out.print(f"sweep [bold]{spec.name}[/]: {summary.total} jobs, {summary.skipped} already "
              f"done, attempts this run: {outcomes}"
              + (f"; {summary.recovered} attempts of a stopped run marked lost"
                 if summary.recovered else ""))
    if summary.interrupted:
        raise fail("interrupted; run the same command again to resume", 130)
    if summary.failed_jobs:
        raise fail(f"{summary.failed_jobs} job(s) failed; `orchestrate status {spec.name}` "
                   f"shows them, --rerun-failed runs them again")


def _executor(spec, file: Path, store, slots: int | None, kind: str | None,
              hosts: Path | None, address: str | None):
    section = spec.file.executor
    kind = kind or section.kind
    if kind == "ssh":
        import os

        from orchestrator.executors.ssh import SSHExecutor

        if hosts is None and section.hosts:
            hosts = file.parent / Path(section.hosts).expanduser()
        path = hosts or Path(os.environ.get("BENCHSWEEP_HOSTS") or DEFAULT_INVENTORY)
        inv = _inventory(path)
        try:
            return SSHExecutor(inv, store=store,
                               log=lambda m: err.print(m, highlight=False))
        except RuntimeError as e:
            raise fail(f"{path}: {e}") from None
    if kind == "ray":
        from orchestrator.executors.ray_cluster import RayClusterExecutor

        address = address or section.address
        if not address:
            raise fail("the ray executor needs --address (or executor.address in the sweep "
                       "file)", 2)
        try:
            return RayClusterExecutor(address)
        except (RuntimeError, ConnectionError) as e:
            raise fail(f"ray cluster {address}: {e}") from None
    from orchestrator.executors.local import LocalExecutor

    return LocalExecutor(cpu_slots=slots or section.slots)


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

        try:
            return run_sweep(spec, store, executor, rerun_failed=rerun_failed, force=force,
                             on_change=on_change)
        except RuntimeError as e:
            raise fail(str(e)) from None


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
              f"(fingerprint {spec.fingerprint}), baseline {spec.baseline}")


@app.command()
def status(sweep: Annotated[str | None, typer.Argument()] = None, db: DbOpt = None) -> None:
    """Sweeps, their jobs by state, and the jobs running now."""
    from db.status import running_attempts, sweep_rows

    store = open_store(db)
    rows = sweep_rows(store, sweep)
    if sweep and not rows:
        raise fail(f"no sweep named {sweep!r}")
    table = Table(title="sweeps")
    for col in ("sweep", "jobs", "pending", "running", "succeeded", "failed", "coordinator",
                "last run"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.name, str(r.counts.total), str(r.counts.pending), str(r.counts.running),
                      str(r.counts.succeeded), f"[red]{r.counts.failed}[/]" if r.counts.failed
                      else "0", r.owner or "", _when(r.last_started_at))
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
        from db.status import failed_jobs

        for f in failed_jobs(store, sweep):
            out.print(f"[red]failed[/] {f.variant} max_num_seqs={f.max_num_seqs} "
                      f"gpu_mem={f.gpu_memory_utilization:g} repeat={f.repeat}: "
                      f"{f.error_kind}: {f.error}", highlight=False)


def _when(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S") if t else ""


@app.command()
def results(
    sweep: Annotated[str, typer.Argument()],
    db: DbOpt = None,
    baseline: Annotated[str | None, typer.Option(help="Variant the speedups are against "
                                                      "[default: the sweep's baseline]")] = None,
) -> None:
    """One row per configuration: mean ± std over repeats, n, tok/s, speedup."""
    import math

    from db.results import results_frame, summarize

    store = open_store(db)
    if store.sweep_id(sweep) is None:
        raise fail(f"no sweep named {sweep!r}")
    baseline = baseline or _sweep_baseline(store, sweep)
    summary = summarize(results_frame(store, sweep), baseline)
    if summary.empty:
        out.print(f"sweep {sweep}: no results yet")
        return
    table = Table(title=f"{sweep}: output tokens/s, speedup vs {baseline}")
    for col in ("variant", "options", "max_num_seqs", "gpu_mem", "card", "n", "tok/s",
                "± std", "95% CI", "CV", "elapsed s", "speedup"):
        table.add_column(col, justify="right" if col not in ("variant", "options", "card")
                         else "left")
    for _, r in summary.iterrows():
        opts = "" if r["options"] == "{}" else r["options"]
        ci = "" if math.isnan(r["ci95"]) else f"±{r['ci95']:,.0f}"
        cv = f"{r['cv'] * 100:.1f}%" + (" [yellow]noisy[/]" if r["noisy"] else "")
        sp = r["speedup_note"] if math.isnan(r["speedup"]) else f"{r['speedup']:.2f}×"
        table.add_row(r["variant"], opts, str(r["max_num_seqs"]),
                      f"{r['gpu_memory_utilization']:g}", str(r["gpu_name"]), str(r["n"]),
                      f"{r['tok_s_mean']:,.1f}", f"{r['tok_s_std']:,.1f}", ci, cv,
                      f"{r['elapsed_s_mean']:.2f}", sp)
    out.print(table)


def _sweep_baseline(store, sweep: str) -> str | None:
    from sqlalchemy import select

    from db.models import Sweep

    with store.session() as s:
        return s.scalar(select(Sweep.baseline).where(Sweep.name == sweep))


@app.command()
def export(
    sweep: Annotated[str, typer.Argument()],
    output: Annotated[Path, typer.Option("-o", "--output", help="File to write")],
    fmt: Annotated[str, typer.Option("--format", help="csv | json | parquet")] = "csv",
    db: DbOpt = None,
) -> None:
    """Every measurement of a sweep, one row per result."""
    from db.results import results_frame

    if fmt not in ("csv", "json", "parquet"):
        raise fail(f"--format must be csv, json or parquet, not {fmt!r}", 2)
    store = open_store(db)
    if store.sweep_id(sweep) is None:
        raise fail(f"no sweep named {sweep!r}")
    df = results_frame(store, sweep)
    try:
        if fmt == "csv":
            df.to_csv(output, index=False)
        elif fmt == "json":
            df.to_json(output, orient="records", date_format="iso", indent=1)
        else:
            df.to_parquet(output, index=False)
    except OSError as e:
        raise fail(f"cannot write {output}: {e.strerror}") from None
    out.print(f"wrote {len(df)} results of {sweep} to {output}")


@model_app.command("init")
def model_init(
    arch: Annotated[str, typer.Option(help="qwen2-1.5b | qwen2-0.5b | qwen3-0.6b | tiny | ...")],
    output: Annotated[Path, typer.Option("--out", help="Directory to write")],
    seed: int = 0,
    dtype: str = "bfloat16",
) -> None:
    """Write an HF-format checkpoint (config.json + safetensors) with random weights."""
    code = subprocess.call([sys.executable, "-m", "engine.checkpoints", "--arch", arch,
                            "--out", str(output), "--seed", str(seed), "--dtype", dtype])
    raise typer.Exit(code)


@app.command()
def bench(
    engine: Annotated[str, typer.Option(help="Engine kind: hf, nano, vllm")] = "hf",
    model: Annotated[str | None, typer.Option(help="HF-format checkpoint directory")] = None,
    arch: Annotated[str | None, typer.Option(help="Or a named architecture, random weights")]
    = None,
    workload: str = "standard",
    num_seqs: Annotated[int | None, typer.Option(min=1)] = None,
    input_len: Annotated[str | None, typer.Option(help="MIN,MAX")] = None,
    output_len: Annotated[str | None, typer.Option(help="MIN,MAX")] = None,
    temperature: Annotated[float | None, typer.Option(min=0)] = None,
    max_num_seqs: Annotated[int, typer.Option(min=1)] = 256,
    gpu_memory_utilization: Annotated[float, typer.Option(min=0.01, max=1.0)] = (
        DEFAULT_GPU_MEMORY_UTILIZATION),
    option: Annotated[list[str] | None, typer.Option("--option", "-o",
                                                     help="Engine option NAME=VALUE")] = None,
    timeout: float = 3600,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Run one job on this machine, without a sweep, and print its BenchResult."""
    from engine import variants
    from engine.job import BenchJob, ModelRef
    from engine.workload import RECIPES, WorkloadSpec
    from orchestrator.executors.local import visible_gpus
    from orchestrator.executors.process import run_job

    if (model is None) == (arch is None):
        raise fail("give exactly one of --model DIR or --arch NAME", 2)
    if workload not in RECIPES:
        raise fail(f"unknown workload {workload!r}; known: {', '.join(sorted(RECIPES))}", 2)
    try:
        kind = variants.kind(engine)
        opts = dict(_parse_option(o) for o in option or [])
        opts = kind.normalize(opts)
        w = {"name": workload}
        if num_seqs:
            w["num_seqs"] = num_seqs
        for name, value in (("input_len", input_len), ("output_len", output_len)):
            if value:
                w[name] = _parse_range(name, value)
        if temperature is not None:
            w["temperature"] = temperature
        job = BenchJob(engine=engine, variant=engine, model=ModelRef(path=model, arch=arch),
                       workload=WorkloadSpec(**w), max_num_seqs=max_num_seqs,
                       gpu_memory_utilization=gpu_memory_utilization, options=opts)
    except ValueError as e:
        raise fail(str(e), 2) from None
    gpus = visible_gpus()
    outcome = run_job(job.to_json(), gpu=gpus[0] if gpus else "cpu",
                      cuda_visible_devices=gpus[0] if gpus else "", timeout_s=timeout)
    if outcome.outcome != "succeeded":
        if outcome.error_kind == "crash":
            err.print(outcome.log_tail, markup=False, highlight=False)
        raise fail(f"{outcome.error_kind}: {outcome.error}")
    r = outcome.result
    if as_json:
        print(json.dumps(r, sort_keys=True))
        return
    table = Table(title=f"{engine} on {job.model.label}, workload {workload}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for k in ("output_tokens", "requested_output_tokens", "prompt_tokens", "elapsed_s",
              "output_tok_s", "total_tok_s", "prefill_tok_s", "decode_tok_s", "load_s",
              "profile_s", "compile_s", "capture_s", "warmup_s", "start_s", "kv_blocks",
              "block_size", "kv_tokens", "compile_cache_warm", "peak_memory_bytes", "device",
              "workload_fingerprint"):
        v = r.get(k)
        table.add_row(k, "" if v is None else f"{v:,.2f}" if isinstance(v, float) else str(v))
    out.print(table)


def _parse_option(text: str) -> tuple[str, object]:
    name, eq, value = text.partition("=")
    if not eq or not name:
        raise ValueError(f"--option takes NAME=VALUE, got {text!r}")
    return name, yaml.safe_load(value)


def _parse_range(name: str, text: str) -> tuple[int, int]:
    try:
        lo, hi = (int(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"--{name.replace('_', '-')} takes MIN,MAX, got {text!r}") from None
    return lo, hi


@app.command()
def dashboard(
    db: DbOpt = None,
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 for every interface")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8501,
) -> None:
    """Open the Streamlit dashboard over the database the coordinator writes."""
    import importlib.util
    import os

    from db.store import resolve_url

    if importlib.util.find_spec("streamlit") is None:
        raise fail("the dashboard needs streamlit: pip install '.[dashboard]'", 2)
    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"[bold yellow]warning:[/] the dashboard has no login: anyone who can reach "
                  f"{host}:{port} can read every result in the database", highlight=False,
                  soft_wrap=True)
    entry = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
    env = dict(os.environ, BENCHSWEEP_DB=resolve_url(db))
    out.print(f"dashboard on http://{host}:{port} (Ctrl-C stops it)", highlight=False)
    cmd = [sys.executable, "-m", "streamlit", "run", str(entry), "--server.address", host,
           "--server.port", str(port), "--server.headless", "true",
           "--browser.gatherUsageStats", "false", "--theme.primaryColor", "#1c6dd0"]
    try:
        code = subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)


# --- hosts --------------------------------------------------------------------------------

InventoryOpt = Annotated[Path, typer.Option("--inventory", "-i", envvar="BENCHSWEEP_HOSTS",
                                            help="Inventory file (YAML)")]
AcceptNewOpt = Annotated[bool, typer.Option("--accept-new", help="Trust and save the key of a "
                                                                 "host not yet in known_hosts")]
DEFAULT_INVENTORY = Path("hosts.yaml")


def _inventory(path: Path, missing_ok: bool = False):
    from orchestrator.hosts import Inventory, InventoryError

    try:
        return Inventory.load(path, missing_ok=missing_ok)
    except InventoryError as e:
        raise fail(str(e), 2) from None


def _selected(inv, names: list[str] | None):
    from orchestrator.hosts import InventoryError

    try:
        hosts = inv.select(names)
    except InventoryError as e:
        raise fail(str(e), 2) from None
    if not hosts:
        raise fail(f"{inv.path} has no hosts; add one with `orchestrate hosts add`", 2)
    return hosts


@hosts_app.command("add")
def hosts_add(
    name: Annotated[str, typer.Argument(help="A short name for the host")],
    address: Annotated[str, typer.Option(help="Host name or IP (an AutoDL gateway)")],
    port: Annotated[int, typer.Option(min=1, max=65535)] = 22,
    user: str = "root",
    key_file: Annotated[str | None, typer.Option(help="Private key file (else ssh-agent)")]
    = None,
    setup: Annotated[str | None, typer.Option(help="Shell line run before every command, "
                                                   "e.g. 'source /etc/network_turbo'")] = None,
    python: Annotated[str, typer.Option(help="Interpreter the environment is built from")]
    = "python3",
    venv: Annotated[bool, typer.Option(help="Build a venv (--system-site-packages) rather "
                                            "than use the interpreter as it is")] = True,
    pip_args: Annotated[str, typer.Option(help="Extra pip arguments (mirror, wheelhouse)")]
    = "",
    workdir: str = "~/benchsweep",
    gpus: Annotated[str | None, typer.Option(help="GPU indices to use, e.g. 0,1 "
                                                  "[default: all]")] = None,
    inventory: InventoryOpt = DEFAULT_INVENTORY,
    db: DbOpt = None,
) -> None:
    """Add a host to the inventory, or change one (its key is checked by `hosts check`)."""
    from pydantic import ValidationError

    from orchestrator.hosts import NAME, Host, HostConfig

    if not NAME.match(name):
        raise fail(f"host name {name!r} must be letters, digits, '.', '_' or '-'", 2)
    if key_file and not Path(key_file).expanduser().is_file():
        raise fail(f"--key-file {key_file}: no such file", 2)
    inv = _inventory(inventory, missing_ok=True)
    try:
        cfg = HostConfig(address=address, port=port, user=user, key_file=key_file, setup=setup,
                         python=python, venv=venv, pip_args=pip_args, workdir=workdir,
                         gpus=[g.strip() for g in gpus.split(",")] if gpus else None)
    except ValidationError as e:
        raise fail(f"{e.errors()[0]['loc'][0]}: {e.errors()[0]['msg']}", 2) from None
    inv.hosts[name] = Host(name, cfg)
    inv.save()
    open_store(db).save_host(name, address=address, port=port, user=user, key_file=key_file,
                             setup=setup)
    out.print(f"host {name} ({user}@{address}:{port}) saved in {inventory}", highlight=False)


@hosts_app.command("remove")
def hosts_remove(name: str, inventory: InventoryOpt = DEFAULT_INVENTORY,
                 db: DbOpt = None) -> None:
    """Remove a host from the inventory (its attempts stay in the database)."""
    inv = _inventory(inventory)
    if name not in inv.hosts:
        raise fail(f"no host named {name!r} in {inventory}", 2)
    del inv.hosts[name]
    inv.save()
    open_store(db).remove_host(name)
    out.print(f"host {name} removed from {inventory}", highlight=False)


@hosts_app.command("list")
def hosts_list(inventory: InventoryOpt = DEFAULT_INVENTORY, db: DbOpt = None) -> None:
    """The inventory with each host's state and last check."""
    from orchestrator.hosts import summary

    inv = _inventory(inventory, missing_ok=True)
    rows = {h.name: h for h in open_store(db).hosts()}
    table = Table(title=f"hosts ({inventory})")
    for col in ("name", "address", "user", "key", "setup", "state", "last check", "found"):
        table.add_column(col)
    for name, h in inv.hosts.items():
        c, row = h.config, rows.get(name)
        check = row.last_check if row else None
        found = (check.get("error") or summary(check)) if check else ""
        table.add_row(name, f"{c.address}:{c.port}", c.user, c.key_file or "agent",
                      c.setup or "", row.state if row else "unknown",
                      _when(row.last_check_at) if row else "", found)
    out.print(table)


def _sync_row(store, host) -> None:
    c = host.config
    store.save_host(host.name, address=c.address, port=c.port, user=c.user,
                    key_file=c.key_file, setup=c.setup)


@hosts_app.command("check")
def hosts_check(
    names: Annotated[list[str] | None, typer.Argument(help="Hosts [default: all]")] = None,
    accept_new: AcceptNewOpt = False,
    inventory: InventoryOpt = DEFAULT_INVENTORY,
    db: DbOpt = None,
) -> None:
    """Reach each host: python, free disk, GPUs (nvidia-smi). Exits 1 if any failed."""
    from orchestrator.hosts import check, summary
    from orchestrator.ssh import HostKeyError, SSHError

    inv = _inventory(inventory)
    store = open_store(db)
    bad = 0
    for host in _selected(inv, names):
        _sync_row(store, host)
        try:
            with contextlib.closing(inv.connect(host, accept_new=accept_new)) as conn:
                info = check(conn, host)
        except SSHError as e:
            bad += 1
            state = "bad_key" if isinstance(e, HostKeyError) else "unreachable"
            store.record_check(host.name, state, {"error": str(e)})
            err.print(f"[red]{host.name}[/]: {e}", highlight=False, soft_wrap=True)
            continue
        store.record_check(host.name, "ok", info)
        out.print(f"[green]{host.name}[/]: {summary(info)}", highlight=False)
    if bad:
        raise typer.Exit(1)


@hosts_app.command("provision")
def hosts_provision(
    names: Annotated[list[str] | None, typer.Argument(help="Hosts [default: all]")] = None,
    accept_new: AcceptNewOpt = False,
    inventory: InventoryOpt = DEFAULT_INVENTORY,
    db: DbOpt = None,
) -> None:
    """Sync the project's tracked files, build the environment, run the engine self-check."""
    from orchestrator.hosts import check, provision
    from orchestrator.ssh import SSHError

    inv = _inventory(inventory)
    store = open_store(db)
    bad = 0
    for host in _selected(inv, names):
        _sync_row(store, host)
        try:
            with contextlib.closing(inv.connect(host, accept_new=accept_new)) as conn:
                done = provision(conn, host, log=lambda m: out.print(m, highlight=False))
                info = check(conn, host)
        except SSHError as e:
            bad += 1
            store.record_check(host.name, "unprovisioned", {"error": str(e)})
            err.print(f"[red]{host.name}[/]: provisioning failed: {e}", highlight=False,
                      soft_wrap=True)
            continue
        info["provision_s"] = done.seconds
        store.record_check(host.name, "ok", info)
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in done.seconds.items())
        out.print(f"[green]{host.name}[/]: provisioned ({steps}); {done.self_check}",
                  highlight=False)
    if bad:
        raise typer.Exit(1)


@hosts_app.command("join")
def hosts_join(
    head: Annotated[str, typer.Option(help="The Ray cluster's head, HOST:PORT")],
    names: Annotated[list[str] | None, typer.Argument(help="Hosts [default: all]")] = None,
    ray_args: Annotated[str, typer.Option(help="More `ray start` arguments, e.g. "
                                               "'--object-store-memory 1000000000'")] = "",
    accept_new: AcceptNewOpt = False,
    inventory: InventoryOpt = DEFAULT_INVENTORY,
    db: DbOpt = None,
) -> None:
    """Start Ray on provisioned hosts as workers of a cluster, one resource per GPU slot;
    then `orchestrate sweep FILE --executor ray --address HEAD`."""
    from orchestrator.hosts import check, join, slots_of
    from orchestrator.ssh import SSHError

    inv = _inventory(inventory)
    store = open_store(db)
    bad = 0
    for host in _selected(inv, names):
        _sync_row(store, host)
        try:
            with contextlib.closing(inv.connect(host, accept_new=accept_new)) as conn:
                info = check(conn, host)
                resources = join(conn, host, head, slots_of(host, info), ray_args)
        except SSHError as e:
            bad += 1
            err.print(f"[red]{host.name}[/]: {e}", highlight=False, soft_wrap=True)
            continue
        store.record_check(host.name, "joined", info)
        out.print(f"[green]{host.name}[/]: joined {head} with {resources}", highlight=False)
    if bad:
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
