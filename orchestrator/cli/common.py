"""What every command group shares: the consoles, the database option and opening the
store. A command that fails raises UserError (engine/errors.py); cli/__init__.py prints it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console

from engine.errors import UserError

out = Console()
err = Console(stderr=True)

DbOpt = Annotated[str | None, typer.Option("--db", help="Database URL or SQLite path",
                                           show_default="$BENCHSWEEP_DB, else ./benchsweep.db")]


def open_store(db: str | None):
    from sqlalchemy.exc import OperationalError

    from db.store import Store

    try:
        return Store(db)
    except OperationalError as e:
        raise UserError(f"cannot open database: {str(e.orig).splitlines()[0]}") from None


def when(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S") if t else ""
