"""Sweeps: every sweep with its state and progress; refreshes itself while one runs."""

from __future__ import annotations

import streamlit as st

from dashboard.charts import sweeps_table
from dashboard.common import link, page_path, state_css, store
from db.read.sweeps import sweeps_frame

REFRESH_S = 3.0

st.title("Sweeps")
db = store()


def render() -> None:
    sweeps = sweeps_frame(db)
    if sweeps.empty:
        st.info("No sweeps yet. Run one with `orchestrate sweep sweeps/demo.yaml`; it appears "
                "here as soon as it starts.", icon=":material/info:")
        return
    running = sweeps[sweeps["state"] == "running"]
    cols = st.columns(5)
    cols[0].metric("sweeps", len(sweeps))
    cols[1].metric("running", len(running))
    cols[2].metric("jobs done", int(sweeps["done"].sum()))
    cols[3].metric("jobs failed", int(sweeps["failed"].sum()))
    cols[4].metric("jobs pending", int(sweeps["pending"].sum() + sweeps["running"].sum()))
    table = sweeps_table(sweeps)
    picked = st.dataframe(
        table.style.map(state_css, subset=["state"]), hide_index=True, width="stretch",
        key="sweeps_table",
        on_select="rerun", selection_mode="single-row",
        column_config={
            "name": st.column_config.TextColumn("sweep"),
            "note": st.column_config.TextColumn("", help="a lost coordinator: its heartbeat "
                                                         "stopped without a word"),
            "progress": st.column_config.ProgressColumn("progress", min_value=0, max_value=1,
                                                        format="percent"),
            "started": st.column_config.DatetimeColumn("started (UTC)",
                                                       format="YYYY-MM-DD HH:mm:ss"),
            "link": st.column_config.LinkColumn("open", display_text="open ↗"),
        },
    )
    rows = picked.selection.rows if picked else []
    if rows:
        st.switch_page(page_path("sweep"), query_params={"sweep": table["name"].iloc[rows[0]]})
    if not running.empty:
        st.caption(f"{len(running)} sweep(s) running; this table refreshes every "
                   f"{REFRESH_S:g} s.")
        for name in running["name"]:
            link("sweep", f"{name} (running)", sweep=name)
    was = st.session_state.get("sweeps_running", False)
    st.session_state["sweeps_running"] = not running.empty
    if was and running.empty:
        st.rerun()  # the last running sweep ended: stop refreshing


any_running = bool((sweeps_frame(db)["state"] == "running").any())
st.session_state["sweeps_running"] = any_running
st.fragment(render, run_every=REFRESH_S if any_running else None)()
