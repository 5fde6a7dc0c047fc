"""What every page shares: the open database, following it live, page links, small
formatting helpers."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from datetime import datetime
from pathlib import Path

import streamlit as st

from db.read.changes import Change, change_token
from db.read.sweeps import LOST_ATTEMPT
from db.store import DatabaseUnusable, SchemaError, Store, resolve_url
from engine.errors import UserError
from engine.memory_budget import GIB

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


# --- following the database -----------------------------------------------------------------
# Every page follows the database whenever it was opened: a fragment polls a cheap probe
# every POLL_S and reruns the page when the probe's answer moved since the page was drawn.
# Not the page's content as a fragment polling itself: a fragment rerun redraws all it drew,
# so content that is drawn only when something changed needs a poll apart from it, and a
# fragment can rerun only itself or the whole page.
POLL_S = 2.0
_SEEN = "live: seen"  # session state: the probe's answer the page on screen was drawn from
_DRAWING = "live: drawing"  # set while the page itself runs, so its poll does not probe again


def follow(db: Store, job: int | None = None) -> Change:
    """Follow the database: rerun this page when its change token (db/read/changes.py)
    moves: a sweep, job, attempt, result or host recorded, a lease taken, beaten, given
    up, or gone quiet; with `job`, output of that job's attempts coming in too. While a
    coordinator runs, its heartbeat moves the token every few seconds, so durations tick;
    while one is lost, the minute does, so "lost N min ago" ages. Call it before anything
    that may st.stop() the page. Returns the token, to key caches by."""
    change = change_token(db, job)
    _watch(lambda: _seen(change_token(db, job)), _seen(change))
    return change


def freshness(change: Change) -> str:
    """A key for caching what a page read at `change` (follow's token): it moves whenever
    the page would read anything differently, the age of a lost coordinator included."""
    return repr(_seen(change))


def await_database(problem: str) -> None:
    """For the page that says why there is no database to show (`problem`): rerun the app
    once there is one, so that its navigation appears, or when the problem changed (a file
    that appeared, still empty)."""
    _watch(_problem, problem)


def _seen(change: Change) -> tuple:
    return change, int(time.time() // 60) if change.lost else None


def _problem() -> str | None:
    try:
        store()
    except NoDatabase as e:
        return str(e)
    return None


def _watch(probe: Callable[[], Hashable], seen: Hashable) -> None:
    st.session_state[_SEEN] = seen
    st.session_state[_DRAWING] = True
    _poll(probe)


@st.fragment(run_every=POLL_S, key="live")
def _poll(probe: Callable[[], Hashable]) -> None:
    if st.session_state.pop(_DRAWING, False):
        return  # run inline by the page, which has just probed
    if probe() != st.session_state.get(_SEEN):
        st.rerun()


def page_path(name: str) -> str:
    return str(HERE / PAGES[name][0])


def link(name: str, label: str | None = None, **params) -> None:
    """A link to another page, carrying query parameters (so the URL is shareable)."""
    st.page_link(page_path(name), label=label or PAGES[name][1], icon=PAGES[name][2],
                 query_params={k: str(v) for k, v in params.items()} or None)


def param(name: str) -> str | None:
    v = st.query_params.get(name)
    return v if v else None


def gib(n_bytes: float) -> str:
    """A count of bytes as every page shows one: in GiB."""
    return f"{n_bytes / GIB:,.2f} GiB"


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
