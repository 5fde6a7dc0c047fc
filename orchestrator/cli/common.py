"""What every command group shares: the consoles, the one-line failure, the database
option and opening the store."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console

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


def when(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S") if t else ""
