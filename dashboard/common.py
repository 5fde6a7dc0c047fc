"""What every page shares: the open database, page links, small formatting helpers."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import streamlit as st

from db.read.sweeps import LOST_ATTEMPT
from db.store import DatabaseUnusable, SchemaError, Store, resolve_url
from engine.errors import UserError

HERE = Path(__file__).parent
# One file a page. Not `pages/`: a directory of that name next to app.py switches Streamlit
# to its older multipage mode, which would run a page without app.py on a direct URL.
PAGES = {  # url path -> (file, title, icon)
    "sweeps": ("views/sweeps.py", "Sweeps", ":material/list:"),
    "sweep": ("views/sweep.py", "Sweep", ":material/grid_on:"),
    "job": ("views/job.py", "Job", ":material/work:"),
    "compare": ("views/compare.py", "Compare", ":material/compare_arrows:"),
    "hosts": ("views/hosts.py", "Hosts", ":material/dns:"),
}
# Colours of states: as Markdown badges, and as text colours in tables.
STATE_COLORS = {"running": "blue", "done": "green", "failed": "red", "stopped": "orange",
                LOST_ATTEMPT: "orange", "empty": "gray", "pending": "gray",
                "succeeded": "green", "timeout": "red",
                "lost": "orange", "cancelled": "orange", "ok": "green", "quarantined": "orange",
                "unreachable": "red", "unknown": "gray"}
CSS_COLORS = {"blue": "#1c6dd0", "green": "#1a8a3a", "red": "#d32f2f", "orange": "#e07b00",
              "gray": "#808080"}


class NoDatabase(UserError):
    """There is no database to show; the message says what to do."""


def db_url() -> str:
    return resolve_url()  # $BENCHSWEEP_DB, else ./benchsweep.db


@st.cache_resource(show_spinner=False)
def _open(url: str) -> Store:
    return Store(url, upgrade=False)


def store() -> Store:
    """The database the coordinator writes, opened read-only in spirit (never migrated from
    here). Raises NoDatabase with a readable message when there is nothing to show."""
    from sqlalchemy.engine import make_url

    url = db_url()
    shown = make_url(url).render_as_string(hide_password=True)
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite") and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database)
        if not path.exists():
            raise NoDatabase(f"There is no database at `{path}` yet. Run a sweep first, "
                             f"e.g. `orchestrate sweep sweeps/demo.yaml --db {path}`.")
    try:
        return _open(url)
    except SchemaError as e:
        if "has schema none" in str(e):
            raise NoDatabase(f"The database `{shown}` is empty: no sweep has been recorded "
                             f"in it yet. Run `orchestrate sweep FILE --db ...` to fill "
                             f"it.") from None
        raise NoDatabase(f"The database `{shown}` was written by another version of "
                         f"benchsweep, so this dashboard cannot read it.\n\n{e}.\n\nUpgrade "
                         f"it with a writing command of this version (e.g. `orchestrate "
                         f"status --db ...`), or open it with the version that wrote "
                         f"it.") from None
    except DatabaseUnusable as e:
        raise NoDatabase(f"Cannot open the database: {e}") from None


def page_path(name: str) -> str:
    return str(HERE / PAGES[name][0])


def link(name: str, label: str | None = None, **params) -> None:
    """A link to another page, carrying query parameters (so the URL is shareable)."""
    st.page_link(page_path(name), label=label or PAGES[name][1], icon=PAGES[name][2],
                 query_params={k: str(v) for k, v in params.items()} or None)


def param(name: str) -> str | None:
    v = st.query_params.get(name)
    return v if v else None


def when(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S") if t else ""


# What Markdown (and Streamlit's :colour[...] / :material/...: directives, $ for LaTeX)
# would read as syntax inside a line.
_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]<>#|~:$"})


def md(text) -> str:
    """A user's string (a variant's name, options) as literal text inside Markdown."""
    return str(text).translate(_MD_SPECIAL)


def badge(state: str) -> str:
    """A state as a coloured Markdown badge."""
    return f":{STATE_COLORS.get(state, 'gray')}-badge[{state}]"


def state_css(state) -> str:
    """A table cell's style for a state column (pandas Styler.map)."""
    color = CSS_COLORS[STATE_COLORS.get(str(state), "gray")]
    return f"color: {color}; font-weight: 600"
