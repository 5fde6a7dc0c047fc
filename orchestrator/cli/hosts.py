"""`orchestrate hosts`: the SSH inventory, and the per-host commands (check, provision,
join) that share one loop: connect to each selected host, do one step, record its state.
Every inventory value is printed as text (escaped), the setup line masked; `hosts list` reads
the database but never creates one."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from engine.errors import UserError
from orchestrator.cli.common import DbOpt, TextTable, err, one_line, open_store, out, when
from orchestrator.cli.output import full_width

hosts_app = typer.Typer(help="Remote GPU hosts reached over SSH: inventory, checks, "
                             "provisioning.", no_args_is_help=True)

InventoryOpt = Annotated[Path | None, typer.Option(
    "--inventory", "-i", help="Inventory file (YAML)",
    show_default="$BENCHSWEEP_HOSTS, else hosts.yaml")]
AcceptNewOpt = Annotated[bool, typer.Option("--accept-new", help="Trust and save the key of a "
                                                                 "host not yet in known_hosts")]
NamesArg = Annotated[list[str] | None, typer.Argument(help="Hosts", show_default="all")]


def _inventory(flag: Path | None, missing_ok: bool = False):
    from orchestrator.executors.choose import inventory_path
    from orchestrator.hosts import Inventory

    return Inventory.load(inventory_path(flag), missing_ok=missing_ok)


def _selected(inv, names: list[str] | None):
    hosts = inv.select(names)
    if not hosts:
        raise UserError(f"{inv.path} has no hosts; add one with `orchestrate hosts add`", 2)
    return hosts


@hosts_app.command("add")
def hosts_add(
    name: Annotated[str, typer.Argument(help="A short name for the host")],
    address: Annotated[str, typer.Option(help="Host name or IP (an AutoDL gateway)")],
    port: Annotated[int, typer.Option(min=1, max=65535, help="SSH port")] = 22,
    user: Annotated[str, typer.Option(help="SSH user")] = "root",
    key_file: Annotated[str | None, typer.Option(help="Private key file",
                                                 show_default="ssh-agent")] = None,
    setup: Annotated[str | None, typer.Option(help="Shell line run before every command, "
                                                   "e.g. 'source /etc/network_turbo'",
                                              show_default="none")] = None,
    python: Annotated[str, typer.Option(help="Interpreter the environment is built from")]
    = "python3",
    venv: Annotated[bool, typer.Option(help="Build a venv (--system-site-packages) rather "
                                            "than use the interpreter as it is")] = True,
    pip_args: Annotated[str, typer.Option(help="Extra pip arguments (mirror, wheelhouse)",
                                          show_default="none")] = "",
    workdir: Annotated[str, typer.Option(help="Where the project and its environment live "
                                              "on the host")] = "~/benchsweep",
    gpus: Annotated[str | None, typer.Option(help="GPU indices to use, e.g. 0,1",
                                             show_default="all")] = None,
    inventory: InventoryOpt = None,
    db: DbOpt = None,
) -> None:
    """Add a host to the inventory, or change one (its key is checked by `hosts check`)."""
    from orchestrator.hosts import NAME, Host, host_config

    if not NAME.match(name):
        raise UserError(f"host name {name!r} must be letters, digits, '.', '_' or '-'", 2)
    cfg = host_config(address=address, port=port, user=user, key_file=key_file, setup=setup,
                      python=python, venv=venv, pip_args=pip_args, workdir=workdir,
                      gpus=[g.strip() for g in gpus.split(",")] if gpus else None)
    if key_file and not Path(key_file).expanduser().is_file():
        raise UserError(f"--key-file {key_file}: no such file", 2)
    inv = _inventory(inventory, missing_ok=True)
    store = open_store(db)  # before the inventory changes: a bad --db changes nothing
    inv.hosts[name] = host = Host(name, cfg)
    inv.save()
    _sync_row(store, host)
    out.print(f"host {name} ({user}@{address}:{port}) saved in {inv.path}", markup=False,
              highlight=False)


@hosts_app.command("remove")
def hosts_remove(name: str, inventory: InventoryOpt = None,
                 db: DbOpt = None) -> None:
    """Remove a host from the inventory (its attempts stay in the database)."""
    inv = _inventory(inventory)
    if name not in inv.hosts:
        raise UserError(f"no host named {name!r} in {inv.path}", 2)
    store = open_store(db)
    del inv.hosts[name]
    inv.save()
    store.remove_host(name)
    out.print(f"host {name} removed from {inv.path}", markup=False, highlight=False)


@hosts_app.command("list")
def hosts_list(inventory: InventoryOpt = None, db: DbOpt = None) -> None:
    """The inventory with each host's state and last check (setup lines masked)."""
    from db.read.hosts import host_rows
    from db.redact import mask
    from db.store import NoDatabase
    from orchestrator.hosts import summary

    inv = _inventory(inventory, missing_ok=True)
    try:
        rows = {h.name: h for h in host_rows(open_store(db, read_only=True))}
    except NoDatabase:  # no host checked yet: the inventory alone
        rows = {}
    table = TextTable(title=f"hosts ({inv.path})")
    for col in ("name", "address", "user", "key", "setup", "state", "last check", "found"):
        table.add_column(col)
    for name, h in inv.hosts.items():
        c, row = h.config, rows.get(name)
        check = row.last_check if row else None
        found = (check.get("error") or summary(check)) if check else ""
        table.add_row(name, f"{c.address}:{c.port}", c.user, c.key_file or "agent",
                      mask(c.setup) or "", row.state if row else "unknown",
                      when(row.last_check_at) if row else "", found)
    full_width(out).print(table)


def _sync_row(store, host) -> None:
    c = host.config
    store.save_host(host.name, address=c.address, port=c.port, user=c.user,
                    key_file=c.key_file, setup=c.setup)


def _each_host(names: list[str] | None, accept_new: bool, inventory: Path | None,
               db: str | None, step: Callable, failed_state: Callable[[Exception], str | None],
               failed_prefix: str = "") -> None:
    """Connect to each selected host in turn and run step(conn, host) -> (state, info,
    line). A host that fails (SSHError) gets failed_state(error) recorded, where that is
    not None, and one red line; the others go on. Exits 1 if any failed."""
    from orchestrator.ssh import SSHError

    inv = _inventory(inventory)
    store = open_store(db)
    bad = 0
    for host in _selected(inv, names):
        _sync_row(store, host)
        try:
            with contextlib.closing(inv.connect(host, accept_new=accept_new)) as conn:
                state, info, line = step(conn, host)
        except SSHError as e:
            bad += 1
            if (state := failed_state(e)) is not None:
                store.record_check(host.name, state, {"error": str(e)})
            err.print(f"[red]{escape(host.name)}[/]: {failed_prefix}{escape(one_line(str(e)))}",
                      highlight=False, soft_wrap=True)
            continue
        store.record_check(host.name, state, info)
        out.print(f"[green]{escape(host.name)}[/]: {line}", highlight=False)
    if bad:
        raise typer.Exit(1)


@hosts_app.command("check")
def hosts_check(names: NamesArg = None, accept_new: AcceptNewOpt = False,
                inventory: InventoryOpt = None, db: DbOpt = None) -> None:
    """Reach each host and check each step: its setup line, workdir (created), python, free
    disk, GPUs (nvidia-smi). Exits 1 if any failed."""
    from orchestrator.hosts import ProbeFailed, probe_host, summary
    from orchestrator.ssh import HostKeyError

    def step(conn, host):
        info = probe_host(conn, host)
        return "ok", info, escape(summary(info))

    def failed_state(e: Exception) -> str:
        return ("bad_key" if isinstance(e, HostKeyError)
                else "check_failed" if isinstance(e, ProbeFailed) else "unreachable")

    _each_host(names, accept_new, inventory, db, step, failed_state)


@hosts_app.command("provision")
def hosts_provision(names: NamesArg = None, accept_new: AcceptNewOpt = False,
                    inventory: InventoryOpt = None, db: DbOpt = None) -> None:
    """Sync the project's tracked files, build the environment, run the engine self-check."""
    from orchestrator.hosts import probe_host, provision

    def step(conn, host):
        done = provision(conn, host, log=lambda m: out.print(m, markup=False, highlight=False))
        info = probe_host(conn, host) | {"provision_s": done.seconds}
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in done.seconds.items())
        return "ok", info, escape(f"provisioned ({steps}); {done.self_check}")

    _each_host(names, accept_new, inventory, db, step, lambda e: "unprovisioned",
               "provisioning failed: ")


@hosts_app.command("join")
def hosts_join(
    head: Annotated[str, typer.Option(help="The Ray cluster's head, HOST:PORT")],
    names: NamesArg = None,
    ray_args: Annotated[str, typer.Option(help="More `ray start` arguments, e.g. "
                                               "'--object-store-memory 1000000000'",
                                          show_default="none")] = "",
    accept_new: AcceptNewOpt = False,
    inventory: InventoryOpt = None,
    db: DbOpt = None,
) -> None:
    """Start Ray on provisioned hosts as workers of a cluster, one resource per GPU slot;
    then `orchestrate sweep FILE --executor ray --address HEAD`."""
    from orchestrator.hosts import join, probe_host, slots_of

    def step(conn, host):
        info = probe_host(conn, host)
        resources = join(conn, host, head, slots_of(host, info), ray_args)
        return "joined", info, escape(f"joined {head} with {resources}")

    _each_host(names, accept_new, inventory, db, step, lambda e: None)
