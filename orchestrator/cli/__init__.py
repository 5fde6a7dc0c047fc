"""`orchestrate`: the command line, one module per command group (sweeps.py: sweep, status,
results, export, dashboard; hosts.py: the SSH inventory; engine.py: bench, model init).
Every error a user can cause ends in one line on stderr and a non-zero exit."""

from __future__ import annotations

import typer

from orchestrator.cli import engine, hosts, sweeps

app = typer.Typer(help="Benchmark sweeps of LLM inference engines.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
for command in (*sweeps.COMMANDS, *engine.COMMANDS):
    app.command()(command)
app.add_typer(engine.model_app, name="model")
app.add_typer(hosts.hosts_app, name="hosts")


def main() -> None:
    app()
