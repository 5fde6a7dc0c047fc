"""`orchestrate`: the command line, one module per command group (sweeps.py: sweep, status,
results, export, dashboard; logs.py: a job's output; hosts.py: the SSH inventory; engine.py:
bench, model init).

Errors end here, in one place (`_Commands.invoke`): a UserError (engine/errors.py) is one
line on stderr, `error: <message>`, and its exit code (2 bad input, 1 a condition); any
other exception is a bug: one line that says so and names the file its traceback was saved
to, exit 1.

Help conventions, for every command: an option's help shows its default (typer's
show_default: a string where the default is not a plain value, never a hand-written
"[default: ...]", which Rich takes for markup and swallows); a flag shows no value type;
`-o` is always an output path; `orchestrate --version` prints the installed version."""

from __future__ import annotations

import tempfile
import traceback
from importlib import metadata
from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperGroup, TyperOption
from typer.exceptions import TyperException

from engine.errors import UserError
from orchestrator.cli import engine, hosts, logs, sweeps
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
        except BrokenPipeError:  # the reader went away (`orchestrate ... | head`): stop quietly
            raise typer.Exit(141) from None
        except UserError as e:
            print_error(str(e))
            raise typer.Exit(e.exit_code) from None
        except Exception as e:
            what = ": ".join([type(e).__name__, *str(e).splitlines()[:1]])
            print_error(f"internal error (a bug in benchsweep): {what}; traceback in "
                        f"{save_traceback(e)}")
            raise typer.Exit(1) from None


def _no_type_for_flags(value_type):
    # typer's Rich help gives every option a value type, a flag's too (`--dry-run <bool>`);
    # a flag takes no value, so it shows none. Typer versions without this hook need nothing.
    def display(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else value_type(self, ctx)

    return display


if hasattr(TyperOption, "display_type_rich"):
    TyperOption.display_type_rich = _no_type_for_flags(TyperOption.display_type_rich)


def version() -> str:
    try:
        return metadata.version("benchsweep")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _print_version(value: bool) -> None:
    if value:
        print(f"orchestrate (benchsweep) {version()}")
        raise typer.Exit()


app = typer.Typer(help="Benchmark sweeps of LLM inference engines.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False, cls=_Commands)


@app.callback()
def _root(_version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_print_version,
        help="Print the version and exit.")] = False) -> None:
    """Benchmark sweeps of LLM inference engines."""

for command in (*sweeps.COMMANDS, *logs.COMMANDS, *engine.COMMANDS):
    app.command()(command)
app.add_typer(engine.model_app, name="model")
app.add_typer(hosts.hosts_app, name="hosts")
