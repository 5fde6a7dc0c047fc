"""The benchsweep dashboard: `orchestrate dashboard` runs `streamlit run dashboard/app.py`
with BENCHSWEEP_DB naming the database the coordinator writes."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

try:
    import dashboard  # noqa: F401 - the project is installed (pip install -e .)
except ImportError:  # run from a checkout: streamlit puts only dashboard/ on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dashboard.common import PAGES, NoDatabase, await_database, store  # noqa: E402

st.set_page_config(page_title="benchsweep", page_icon=":material/speed:", layout="wide")


def _problem(message: str):
    def page() -> None:
        st.title("benchsweep")
        st.warning(message, icon=":material/database:")
        await_database(message)
    return page


try:
    store()
    problem = None
except NoDatabase as e:
    problem = str(e)

if problem:
    nav = st.navigation([st.Page(_problem(problem), title="Dashboard", url_path="home",
                                 icon=":material/database:", default=True)])
else:
    here = Path(__file__).parent
    nav = st.navigation([
        st.Page(here / file, title=title, icon=icon, url_path=url, default=url == "sweeps")
        for url, (file, title, icon) in PAGES.items()
    ])
nav.run()
