"""Sweep: the result grid of one sweep: heatmaps, speedups against a baseline, throughput
against max_num_seqs, the best configuration, filters for every axis, CSV download."""

from __future__ import annotations

import math

import streamlit as st

from dashboard import charts
from dashboard.common import badge, link, param, store, when
from db.read.jobs import sweep_jobs
from db.read.results import results_frame, summarize
from db.read.sweeps import sweep_info, sweeps_frame

REFRESH_S = 3.0
AXIS_LABELS = {"variant": "variant", "max_num_seqs": "max_num_seqs",
               "gpu_memory_utilization": "gpu_memory_utilization", "gpu_name": "GPU",
               "model": "model"}

db = store()
sweeps = sweeps_frame(db)
if sweeps.empty:
    st.title("Sweep")
    st.info("No sweeps yet. Run one with `orchestrate sweep sweeps/demo.yaml`.",
            icon=":material/info:")
    st.stop()

names = sweeps.sort_values("started", ascending=False, kind="stable")["name"].tolist()
wanted = param("sweep")
if wanted is not None and wanted not in names:
    st.title("Sweep")
    st.warning(f"There is no sweep named `{wanted}` in this database.", icon=":material/help:")
    wanted = None
name = st.sidebar.selectbox("sweep", names, index=names.index(wanted) if wanted else 0,
                            key="sweep_pick")
if name != param("sweep"):
    st.query_params["sweep"] = name
info = sweep_info(db, name)
row = sweeps[sweeps["name"] == name].iloc[0]
jobs = sweep_jobs(db, name)

st.title(f"Sweep {name}")

# --- filters (from the planned jobs, so they stay put while the sweep runs) -----------------
axes = charts.filter_axes(jobs)
variants = axes.get("variant", [])
default_base = info["baseline"] if info["baseline"] in variants else (variants[0] if variants
                                                                      else None)
baseline = st.sidebar.selectbox("speedup baseline", variants,
                                index=variants.index(default_base) if default_base else 0,
                                key="baseline")
st.sidebar.caption("Filters (none selected = all)")
selected: dict[str, list] = {}
for col, values in axes.items():
    if len(values) > 1:
        label = AXIS_LABELS.get(col, col)
        selected[col] = st.sidebar.multiselect(label, values, default=[], placeholder="all",
                                               key=f"filter {col}")


def render() -> None:
    now = sweeps_frame(db)
    r = now[now["name"] == name].iloc[0] if (now["name"] == name).any() else row
    was = st.session_state.get("sweep_running")
    st.session_state["sweep_running"] = r["state"] == "running"
    if was and r["state"] != "running":
        st.rerun()  # the sweep ended: a full run stops the refresh and updates the filters
    st.markdown(f"{badge(r['state'])} &nbsp; {r['hosts']} host(s) · started "
                f"{when(r['started'])} UTC · baseline {info['baseline'] or '—'}")
    c = st.columns(5)
    c[0].metric("done", f"{r['done']} / {r['total']}")
    c[1].metric("running", int(r["running"]))
    c[2].metric("failed", int(r["failed"]))
    c[3].metric("pending", int(r["pending"]))
    c[4].metric("duration", charts.format_duration(r["duration_s"]) or "—",
                help="since the last start, to its end (or now)")
    if r["total"]:
        st.progress(float(r["progress"]))

    df = results_frame(db, name)
    if df.empty:
        if r["failed"] and not r["done"]:
            st.error(f"No results: all {int(r['failed'])} finished job(s) of this sweep "
                     f"failed. Their errors are below; `orchestrate sweep FILE "
                     f"--rerun-failed` runs them again.", icon=":material/error:")
        else:
            st.info("No results yet: no job of this sweep has succeeded so far.",
                    icon=":material/hourglass_empty:")
        _failures()
        _jobs_table()
        return
    filtered = charts.apply_filters(df, selected)
    summary = summarize(filtered, baseline)
    if summary.empty:
        st.info("No result matches these filters.", icon=":material/filter_alt_off:")
        return
    _best(summary, baseline)

    st.subheader("Output tok/s over max_num_seqs × gpu_memory_utilization")
    st.altair_chart(charts.heatmap(summary), width="content")

    st.subheader(f"Speedup against {baseline}")
    table = charts.speedup_table(summary)
    st.dataframe(
        table, hide_index=True, width="stretch", key="speedup_table",
        column_config={
            "tok/s": st.column_config.NumberColumn(format="%.1f"),
            "± 95% CI": st.column_config.NumberColumn(format="± %.1f",
                                                      help="half-width of the 95% interval "
                                                           "of the mean (Student t)"),
            "CV %": st.column_config.NumberColumn(format="%.1f %%"),
            "noisy": st.column_config.CheckboxColumn(help="coefficient of variation over 5%: "
                                                          "repeat before trusting it"),
            "speedup": st.column_config.NumberColumn(format="%.2f×"),
        })

    st.subheader("Output tok/s against max_num_seqs")
    st.altair_chart(charts.throughput_lines(summary), width="stretch")

    csv = filtered.drop(columns=[c for c in filtered.columns
                                 if c.startswith(charts.OPTION_PREFIX)]).to_csv(index=False)
    st.download_button("Download results (CSV)", csv, file_name=f"{name}.csv",
                       mime="text/csv", icon=":material/download:")
    _failures()
    _jobs_table()


def _best(summary, baseline: str) -> None:
    best = charts.best_config(summary)
    opts = "" if best["options"] == "{}" else f" {best['options']}"
    sp = best["speedup"]
    vs = (f", {sp:.2f}× {baseline}" if not math.isnan(sp) else f" ({best['speedup_note']})")
    ci = "" if math.isnan(best["ci95"]) else f" ± {best['ci95']:,.1f}"
    noisy = " — noisy (CV over 5%), repeat before trusting it" if best["noisy"] else ""
    st.success(
        f"**Best configuration: {best['variant']}{opts}, max_num_seqs {best['max_num_seqs']}, "
        f"gpu_memory_utilization {best['gpu_memory_utilization']:g}** on {best['gpu_name']}: "
        f"**{best['tok_s_mean']:,.1f} tok/s**{ci} (n={best['n']}){vs}{noisy}",
        icon=":material/trophy:")


def _failures() -> None:
    failed = jobs[jobs["state"] == "failed"]
    if failed.empty:
        return
    st.subheader(f"Failed jobs ({len(failed)})")
    st.dataframe(
        failed.assign(link=["job?job=" + str(i) for i in failed["job_id"]])[
            ["link", "variant", "options", "max_num_seqs", "gpu_memory_utilization", "repeat",
             "attempts", "host", "error_kind", "error"]],
        hide_index=True, width="stretch", key="failed_table",
        column_config={"link": st.column_config.LinkColumn("job", display_text=r"job\?job=(\d+)"),
                       "options": st.column_config.TextColumn()})


def _jobs_table() -> None:
    with st.expander(f"All {len(jobs)} jobs"):
        fresh = sweep_jobs(db, name)
        st.dataframe(
            fresh.assign(link=["job?job=" + str(i) for i in fresh["job_id"]])[
                ["link", "variant", "options", "max_num_seqs", "gpu_memory_utilization",
                 "repeat", "state", "attempts", "host", "gpu", "elapsed_s", "output_tok_s"]],
            hide_index=True, width="stretch", key="jobs_table",
            column_config={"link": st.column_config.LinkColumn("job",
                                                               display_text=r"job\?job=(\d+)"),
                           "elapsed_s": st.column_config.NumberColumn(format="%.1f"),
                           "output_tok_s": st.column_config.NumberColumn(format="%.1f")})


link("compare", "Compare this sweep with another", a=name)
running = row["state"] == "running"
st.session_state["sweep_running"] = running
st.fragment(render, run_every=REFRESH_S if running else None)()
