"""Hosts: the SSH inventory with state and last check, and every host that ran a job."""

from __future__ import annotations

import streamlit as st

from dashboard.common import follow, state_css, store
from db.read.hosts import attempt_hosts, hosts_frame

st.title("Hosts")
db = store()
follow(db)
inventory = hosts_frame(db)
seen = attempt_hosts(db)

st.subheader("Inventory")
if inventory.empty:
    st.info("No SSH inventory: `orchestrate hosts` manages one. Jobs run on this machine "
            "(local executor) are listed below.", icon=":material/info:")
else:
    c = st.columns(4)
    c[0].metric("hosts", len(inventory))
    for i, state in enumerate(("ok", "quarantined", "unreachable"), start=1):
        c[i].metric(state, int((inventory["state"] == state).sum()))
    st.dataframe(inventory.style.map(state_css, subset=["state"]), hide_index=True,
                 width="stretch", key="inventory_table",
                 column_config={
                     "last_check": st.column_config.DatetimeColumn("last check (UTC)",
                                                                   format="YYYY-MM-DD HH:mm:ss"),
                     "jobs_run": st.column_config.NumberColumn("jobs run"),
                 })

st.subheader("Hosts that ran jobs")
if seen.empty:
    st.info("No job has run yet.", icon=":material/hourglass_empty:")
else:
    st.dataframe(seen, hide_index=True, width="stretch", key="seen_table",
                 column_config={
                     "slots": st.column_config.TextColumn("GPU slots"),
                     "cards": st.column_config.TextColumn("GPU"),
                     "last_attempt": st.column_config.DatetimeColumn(
                         "last attempt (UTC)", format="YYYY-MM-DD HH:mm:ss"),
                 })
