"""`orchestrate`: the command line, one module per command group (sweeps.py: sweep, status,
results, export, dashboard; hosts.py: the SSH inventory; engine.py: bench, model init).

Errors end here, in one place (`_Commands.invoke`): a UserError (engine/errors.py) is one
line on stderr, `error: <message>`, and its exit code (2 bad input, 1 a condition); any
other exception is a bug: one line that says so and names the file its traceback was saved
to, exit 1."""

from __future__ import annotations

import tempfile
import traceback
from typing import Any

import typer
from rich.markup import escape
from typer.core import TyperGroup
from typer.exceptions import TyperException

from engine.errors import UserError
from orchestrator.cli import engine, hosts, sweeps
from orchestrator.cli.common import err, one_line


def print_error(message: str) -> None:
    """The one error line; the message is the user's text, never Rich markup."""
    err.print(f"[bold red]error:[/] {escape(one_line(message))}", markup=True, highlight=False,
              soft_wrap=True)


def save_traceback(e: BaseException) -> str:
    """Write the traceback of `e` to a new file in the system's temp directory; its path."""
    with tempfile.NamedTemporaryFile("w", prefix="benchsweep-crash-", suffix=".txt",
                                     delete=False) as f:
        f.write("".join(traceback.format_exception(e)))
    return f.name


class _Commands(TyperGroup):
    """The root group: every command runs inside its invoke, so its errors end here."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, TyperException):
            raise  # an exit code, Ctrl-C at a prompt, a usage error: typer reports them
        except UserError as e:
            print_error(str(e))
            raise typer.Exit(e.exit_code) from None
        except Exception as e:
            what = ": ".join([type(e).__name__, *str(e).splitlines()[:1]])
            print_error(f"internal error (a bug in benchsweep): {what}; traceback in "
                        f"{save_traceback(e)}")
            raise typer.Exit(1) from None


app = typer.Typer(help="Benchmark sweeps of LLM inference engines.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False, cls=_Commands)
for command in (*sweeps.COMMANDS, *engine.COMMANDS):
    app.command()(command)
app.add_typer(engine.model_app, name="model")
app.add_typer(hosts.hosts_app, name="hosts")
