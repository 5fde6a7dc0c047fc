"""Tables that scripts and logs can read: `--format table|json|csv|markdown` for the
commands that report (status, results).

A command builds Reports: a title, display columns (a header and the cell text for a row)
and rows of plain values. `table` prints them with Rich (every cell as text, never markup),
at the terminal's width, or at the table's full width when stdout is not a terminal;
`markdown` prints the same cells as Markdown tables; `json` prints the rows' values (not
their display text) as one object keyed by report; `csv` prints the first report's rows.
Notes (footer lines) follow the tables; json carries them under "notes"."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"


FormatOpt = Annotated[Format, typer.Option(
    "--format", help="How to print: csv prints the first table only")]


@dataclass(frozen=True)
class Column:
    header: str
    text: Callable[[dict], str]
    right: bool = False
    style: Callable[[dict], str] | None = None  # a Rich style for the cell, from its row


@dataclass
class Report:
    key: str  # its name in json
    title: str
    columns: list[Column]
    rows: list[dict]  # plain values; json and csv write them as they are
    notes: list[str] = field(default_factory=list)


def full_width(console: Console) -> Console:
    """The console itself on a terminal; elsewhere (a pipe, a log file, a test's capture) one
    that never cuts a table to a width it guessed."""
    return console if console.is_terminal else Console(
        file=console.file, width=1 << 15, color_system=None, highlight=False)


def emit(reports: list[Report], fmt: Format, console: Console) -> None:
    notes = [n for r in reports for n in r.notes]
    if fmt is Format.json:
        doc = {r.key: [{k: _plain(v) for k, v in row.items()} for row in r.rows]
               for r in reports}
        console.file.write(json.dumps({**doc, "notes": notes}, indent=1) + "\n")
    elif fmt is Format.csv:
        rows = reports[0].rows if reports else []
        writer = csv.DictWriter(console.file, fieldnames=list(rows[0]) if rows else [],
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: _plain(v) for k, v in row.items()} for row in rows)
    elif fmt is Format.markdown:
        for r in reports:
            console.file.write(_markdown(r) + "\n")
        for n in notes:
            console.file.write(_md_escape(n) + "\n")
    else:
        wide = full_width(console)
        for r in reports:
            wide.print(_rich(r))
        for n in notes:
            wide.print(escape(n), highlight=False, soft_wrap=True)


def _rich(r: Report) -> Table:
    table = Table(title=escape(r.title))
    for c in r.columns:
        table.add_column(escape(c.header), justify="right" if c.right else "left")
    for row in r.rows:
        table.add_row(*(Text(c.text(row), style=c.style(row) if c.style else "")
                        for c in r.columns))
    return table


def _markdown(r: Report) -> str:
    lines = [f"### {_md_escape(r.title)}", "",
             "| " + " | ".join(_md_escape(c.header) for c in r.columns) + " |",
             "|" + "|".join("---:" if c.right else "---" for c in r.columns) + "|"]
    lines += ["| " + " | ".join(_md_escape(c.text(row)) for c in r.columns) + " |"
              for row in r.rows]
    return "\n".join(lines) + "\n"


_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]<>|#"})


def _md_escape(text: str) -> str:
    return text.translate(_MD_SPECIAL)


def _plain(v: Any) -> Any:
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if isinstance(v, datetime):
        return v.isoformat()
    if hasattr(v, "item"):  # numpy scalars
        return _plain(v.item())
    return v
