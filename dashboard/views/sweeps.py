"""Sweeps: every sweep with its state, progress and duration; follows the database."""

from __future__ import annotations

import streamlit as st

from dashboard.charts import sweeps_table
from dashboard.common import follow, link, page_path, state_css, store
from db.read.sweeps import sweeps_frame

st.title("Sweeps")
db = store()
follow(db)
sweeps = sweeps_frame(db)
if sweeps.empty:
    st.info("No sweeps yet. Run one with `orchestrate sweep sweeps/demo.yaml`; it appears "
            "here as soon as it starts.", icon=":material/info:")
    st.stop()
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
        "note": st.column_config.TextColumn("", help="a lost coordinator (its heartbeat "
                                                     "stopped without a word), or the signal "
                                                     "that stopped the sweep"),
        "progress": st.column_config.ProgressColumn("progress", min_value=0, max_value=1,
                                                    format="percent"),
        "started": st.column_config.DatetimeColumn("started (UTC)",
                                                   format="YYYY-MM-DD HH:mm:ss"),
        "duration": st.column_config.TextColumn(help="the sum of its coordinators' runs"),
        "link": st.column_config.LinkColumn("open", display_text="open ↗"),
    },
)
rows = picked.selection.rows if picked else []
if rows:
    st.switch_page(page_path("sweep"), query_params={"sweep": table["name"].iloc[rows[0]]})
if not running.empty:
    st.caption(f"{len(running)} sweep(s) running; this page updates itself as they go.")
    for name in running["name"]:
        link("sweep", f"{name} (running)", sweep=name)
