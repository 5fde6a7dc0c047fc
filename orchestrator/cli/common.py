"""What every command group shares: the consoles, the database option, opening the store,
and tables whose cells are text. A command that fails raises UserError (engine/errors.py);
cli/__init__.py prints it.

Every string a user typed (a sweep, variant or host name, a path, an error a job returned)
is data, never Rich markup: print it through `escape`, or in a TextTable, whose cells and
title are plain text (a Text cell keeps its style)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

out = Console()
err = Console(stderr=True)

DbOpt = Annotated[str | None, typer.Option(
    "--db", help="Database URL or SQLite path; @FILE reads the URL from FILE, so a password "
                 "stays out of `ps`",
    show_default="$BENCHSWEEP_DB, the URL in $BENCHSWEEP_DB_FILE, else ./benchsweep.db")]


def one_line(text: str) -> str:
    """`text` on one line: a character that would break it or is invisible (a newline, a
    control character, a Unicode line separator) as its escape, e.g. \\x1e."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode()
                   for c in text)


def open_store(db: str | None, *, read_only: bool = False):
    """The database of `--db` (db.store.Store): every way it can be unusable is one
    UserError line. `read_only` (status, results, export, hosts list): a missing database
    is an error, never created."""
    from db.store import Store

    return Store(db, read_only=read_only)


class TextTable(Table):
    """A Rich table whose title and str cells are plain text, never markup: a variant named
    `[/]` or `nano[async]` prints as it is."""

    def __init__(self, *columns, title: str | Text | None = None, **kw):
        super().__init__(*columns, title=Text(title) if isinstance(title, str) else title, **kw)

    def add_row(self, *cells, **kw) -> None:
        super().add_row(*(Text(c) if isinstance(c, str) else c for c in cells), **kw)


def when(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S") if t else ""
