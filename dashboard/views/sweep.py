"""Sweep: the result grid of one sweep: heatmaps, speedups against a baseline with their 95%
intervals and verdicts, throughput against max_num_seqs (each repeat a point), the best
configuration (only where it is distinguishably the best), filters for every axis, CSV
download; the timeline of its attempts on each host and GPU and its efficiency (timed
generate ÷ GPU time held) per variant and overall. Jobs only an earlier version of the
sweep file had are left out, and counted."""

from __future__ import annotations

import math

import streamlit as st

from dashboard import charts
from dashboard.common import badge, follow, link, md, param, store, when
from db.read.jobs import sweep_jobs
from db.read.results import results_frame, speedup_text, summarize, with_speedups
from db.read.sweeps import duration_text, sweep_info, sweeps_frame
from db.read.timeline import attempt_bars, efficiency

AXIS_LABELS = {"variant": "variant", "max_num_seqs": "max_num_seqs",
               "gpu_memory_utilization": "gpu_memory_utilization",
               "max_model_len": "max_model_len", "gpu_name": "GPU", "model": "model"}

db = store()
follow(db)
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
    st.warning(f"There is no sweep named {md(wanted)} in this database.", icon=":material/help:")
    wanted = None
name = st.sidebar.selectbox("sweep", names, index=names.index(wanted) if wanted else 0,
                            key="sweep_pick")
if name != param("sweep"):
    st.query_params["sweep"] = name
info = sweep_info(db, name)
row = sweeps[sweeps["name"] == name].iloc[0]
jobs = sweep_jobs(db, name)

st.title(f"Sweep {md(name)}")

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
    note = f" {md(row['note'])} ·" if row["note"] else ""
    st.markdown(f"{badge(row['state'])} &nbsp;{note} {row['hosts']} host(s) · started "
                f"{when(row['started'])} UTC · baseline {md(info['baseline'] or '—')}")
    c = st.columns(5)
    c[0].metric("done", f"{row['done']} / {row['total']}")
    if row["unknown"]:
        c[1].metric("unknown", int(row["unknown"]),
                    help="attempts left running by a lost coordinator")
    else:
        c[1].metric("running", int(row["running"]))
    c[2].metric("failed", int(row["failed"]))
    c[3].metric("pending", int(row["pending"]))
    c[4].metric("duration", duration_text(row["duration_s"], row["runs"]) or "—",
                help="the sum of its coordinators' runs, each from its start to its end (or "
                     "now, or the last heartbeat of a lost one)")
    if row["total"]:
        st.progress(float(row["progress"]))

    df = results_frame(db, name)
    if df.empty:
        if row["failed"] and not row["done"]:
            st.error(f"No results: all {int(row['failed'])} finished job(s) of this sweep "
                     f"failed. Their errors are below; `orchestrate sweep FILE "
                     f"--rerun-failed` runs them again.", icon=":material/error:")
        else:
            st.info("No results yet: no job of this sweep has succeeded so far.",
                    icon=":material/hourglass_empty:")
        _failures()
        _jobs_table()
        _timeline()
        return
    filtered = charts.apply_filters(df, selected)[df.columns]
    summary = summarize(filtered, baseline)
    if summary.empty:
        st.info("No result matches these filters.", icon=":material/filter_alt_off:")
        return
    if df.attrs["hidden"]:
        st.caption(f"{df.attrs['hidden']} result(s) of jobs no longer in the sweep file are "
                   f"not shown (`orchestrate results {md(name)} --all` lists them).")
    _best(summary, baseline)

    st.subheader("Output tok/s over max_num_seqs × gpu_memory_utilization")
    st.altair_chart(charts.heatmap(summary), width="content")

    st.subheader(f"Speedup against {md(baseline)}")
    table = charts.speedup_table(summary)
    st.dataframe(
        table, hide_index=True, width="stretch", key="speedup_table",
        column_config={
            "tok/s": st.column_config.NumberColumn(format="%.1f"),
            "± 95% CI": st.column_config.TextColumn(help="half-width of the 95% interval of "
                                                         "the mean (Student t)"),
            "noisy": st.column_config.CheckboxColumn(help="coefficient of variation over 5%: "
                                                          "repeat before trusting it"),
            "speedup": st.column_config.NumberColumn(format="%.2f×"),
            "speedup (95% interval)": st.column_config.TextColumn(
                help="Fieller's 95% interval of the ratio of the two means, Welch degrees "
                     "of freedom"),
        })

    st.subheader("Output tok/s against max_num_seqs")
    st.altair_chart(charts.throughput_lines(summary, filtered), width="stretch")

    csv = with_speedups(filtered, summary).to_csv(index=False)
    st.download_button("Download results (CSV)", csv, file_name=f"{name}.csv",
                       mime="text/csv", icon=":material/download:")
    _failures()
    _jobs_table()
    _timeline()


def _timeline() -> None:
    """Every attempt on its host and GPU, and where the GPU time went."""
    bars = attempt_bars(db, name)
    if not bars:
        return
    st.subheader("Timeline")
    st.caption("A lane per host and GPU, a bar per attempt (filled by variant, outlined by "
               "outcome), with its engine start and timed generate inside, placed at the end "
               "of the attempt: the time before them is process start, imports and teardown.")
    st.altair_chart(charts.gantt(charts.timeline_frame(bars)), width="stretch")
    rows = efficiency(bars)
    if not rows:
        return
    overall = rows[-1].ratio
    st.markdown(f"**Efficiency** (time inside timed generates ÷ GPU time held, finished "
                f"attempts): **{'—' if overall is None else f'{overall:.0%}'}** overall")
    st.dataframe(charts.efficiency_table(rows), hide_index=True, key="efficiency_table",
                 column_config={
                     "GPU time held (s)": st.column_config.NumberColumn(format="%.1f"),
                     "timed generate (s)": st.column_config.NumberColumn(format="%.1f"),
                     "efficiency": st.column_config.NumberColumn(format="percent")})


def _config(row) -> str:
    opts = "" if row["options"] == "{}" else f" {row['options']}"
    mml = "" if row["max_model_len"] != row["max_model_len"] or row["max_model_len"] is None \
        else f", max_model_len {int(row['max_model_len'])}"
    return (f"{md(row['variant'] + opts)}, max_num_seqs {row['max_num_seqs']}, "
            f"gpu_memory_utilization {row['gpu_memory_utilization']:g}{mml}")


def _best(summary, baseline: str) -> None:
    """The best configuration, crowned only where it is distinguishably faster than every
    other on the same model, workload and card."""
    best = charts.best_config(summary)
    ci = "" if math.isnan(best["ci95"]) else f" ± {best['ci95']:,.1f}"
    figure = f"**{best['tok_s_mean']:,.1f} tok/s**{ci} (n={best['n']})"
    ties = charts.rivals(summary, best)
    if not ties.empty:
        names = "; ".join(_config(r) for _, r in ties.head(3).iterrows())
        more = f" and {len(ties) - 3} more" if len(ties) > 3 else ""
        st.info(f"**No single best configuration at this n.** The fastest mean, "
                f"{_config(best)} on {md(best['gpu_name'])}: {figure}, is not "
                f"distinguishable (95% interval) from {names}{more}. More repeats may "
                f"separate them.", icon=":material/balance:")
        return
    vs = (f" · against {md(baseline)}: {md(speedup_text(best))}"
          if not math.isnan(best["speedup"])
          else f" ({md(best['speedup_note'])})")
    noisy = " — noisy (CV over 5%), repeat before trusting it" if best["noisy"] else ""
    st.success(f"**Best configuration: {_config(best)}** on {md(best['gpu_name'])}: "
               f"{figure}{vs}{noisy}", icon=":material/trophy:")


def _failures() -> None:
    failed = jobs[jobs["state"] == "failed"]
    if failed.empty:
        return
    st.subheader(f"Failed jobs ({len(failed)})")
    st.dataframe(
        failed.assign(link=["job?job=" + str(i) for i in failed["job_id"]])[
            ["link", "variant", "options", "max_num_seqs", "gpu_memory_utilization",
             "max_model_len", "repeat", "attempts", "host", "error_kind", "error"]],
        hide_index=True, width="stretch", key="failed_table",
        column_config={"link": st.column_config.LinkColumn("job", display_text=r"job\?job=(\d+)"),
                       "options": st.column_config.TextColumn()})


def _jobs_table() -> None:
    with st.expander(f"All {len(jobs)} jobs"):
        st.dataframe(
            jobs.assign(link=["job?job=" + str(i) for i in jobs["job_id"]])[
                ["link", "variant", "options", "max_num_seqs", "gpu_memory_utilization",
                 "max_model_len", "repeat", "state", "attempts", "host", "gpu", "elapsed_s",
                 "output_tok_s"]],
            hide_index=True, width="stretch", key="jobs_table",
            column_config={"link": st.column_config.LinkColumn("job",
                                                               display_text=r"job\?job=(\d+)"),
                           "elapsed_s": st.column_config.NumberColumn(format="%.1f"),
                           "output_tok_s": st.column_config.NumberColumn(format="%.1f")})


link("compare", "Compare this sweep with another", a=name)
render()
