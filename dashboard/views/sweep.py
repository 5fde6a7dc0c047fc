"""Sweep: the result grid of one sweep in a chosen metric (db/read/metrics.py): heatmaps,
speedups against a baseline with their 95% intervals and verdicts (as bars and a table), the
metric against max_num_seqs (each repeat a point), the best configuration (only where it is
distinguishably the best), throughput against a latency with its Pareto front, filters for
every axis, CSV download; the timeline of its attempts on each host and GPU and its
efficiency (timed generate ÷ GPU time held) per variant and overall. Jobs only an earlier
version of the sweep file had are left out, and counted. The sweep, filters, baseline,
metric and latency live in the URL (dashboard/url_state.py)."""

from __future__ import annotations

import math

import streamlit as st

from dashboard import charts, url_state
from dashboard.common import badge, follow, freshness, link, md, param, store, when
from db.read.jobs import sweep_jobs
from db.read.metrics import LATENCIES, METRICS, OUTPUT_TOK_S
from db.read.results import results_frame, speedup_text, summarize, with_speedups
from db.read.sweeps import format_duration, sweep_info, sweeps_frame
from db.read.timeline import attempt_bars, efficiency

AXIS_LABELS = {"variant": "variant", "max_num_seqs": "max_num_seqs",
               "gpu_memory_utilization": "gpu_memory_utilization",
               "max_model_len": "max_model_len", "gpu_name": "GPU", "model": "model"}
DEFAULT_LATENCY = "tpot_p50_ms"

db = store()
fresh = freshness(follow(db))


# What the page reads, read once for each state of the database (every rerun after a
# filter, baseline or metric changed, and every visitor, reuse it).
@st.cache_data(ttl=600, max_entries=4, show_spinner=False)
def _sweeps(url: str, fresh: str):
    return sweeps_frame(db)


@st.cache_data(ttl=600, max_entries=16, show_spinner=False)
def _sweep(url: str, name: str, fresh: str):
    """The sweep's settings, jobs, results (with the count of those hidden: a frame's attrs
    do not survive the cache) and attempts on the timeline."""
    df = results_frame(db, name)
    return sweep_info(db, name), sweep_jobs(db, name), df, df.attrs["hidden"], \
        attempt_bars(db, name)


sweeps = _sweeps(db.url, fresh)
if sweeps.empty:
    st.title("Sweep")
    st.info("No sweeps yet. Run one with `orchestrate sweep sweeps/demo.yaml`.",
            icon=":material/info:")
    st.stop()

names = sweeps.sort_values("started", ascending=False, kind="stable")["name"].tolist()
loading = url_state.loading("sweep_pick")  # else a rerun: the widgets hold the choices
wanted = param("sweep") if loading else None
if wanted is not None and wanted not in names:
    st.title("Sweep")
    st.warning(f"There is no sweep named {md(wanted)} in this database.", icon=":material/help:")
    wanted = None
if loading:
    st.session_state["sweep_pick"] = wanted or names[0]
url_state.keep_valid("sweep_pick", names, names[0])
name = st.sidebar.selectbox("sweep", names, key="sweep_pick")
info, jobs, results, hidden, bars = _sweep(db.url, name, fresh)
row = sweeps[sweeps["name"] == name].iloc[0]

st.title(f"Sweep {md(name)}")

# --- the metric, baseline and filters (the filters from the planned jobs, so they stay put
# while the sweep runs): from the URL as the page loads, their defaults for another sweep ---
axes = {col: values for col, values in charts.filter_axes(jobs).items() if len(values) > 1
        or col == "variant"}
variants = axes.get("variant", [])
default_base = info["baseline"] if info["baseline"] in variants else (variants[0] if variants
                                                                      else None)
notes = []
if loading:
    notes += [url_state.seed_one("metric", "metric", list(METRICS), OUTPUT_TOK_S.key,
                                 from_url=True),
              url_state.seed_one("latency", "latency", [m.key for m in LATENCIES],
                                 DEFAULT_LATENCY, from_url=True)]
if loading or st.session_state.get("sweep page: choices of") != name:
    notes.append(url_state.seed_one("baseline", "baseline", variants, default_base,
                                    from_url=loading))
    notes += [url_state.seed_many(f"filter {col}", col, values, from_url=loading)
              for col, values in axes.items() if len(values) > 1]
    st.session_state["sweep page: choices of"] = name
for note in filter(None, notes):
    st.warning(f"The link's {md(note)}", icon=":material/link_off:")
metric = METRICS[st.sidebar.selectbox("metric", list(METRICS), key="metric",
                                      format_func=lambda k: METRICS[k].title)]
latency = METRICS[st.sidebar.selectbox("latency (against throughput)",
                                       [m.key for m in LATENCIES], key="latency",
                                       format_func=lambda k: METRICS[k].title)]
url_state.keep_valid("baseline", variants, default_base)
baseline = st.sidebar.selectbox("speedup baseline", variants, key="baseline")
st.sidebar.caption("Filters (none selected = all)")
selected: dict[str, list] = {}
for col, values in axes.items():
    if len(values) > 1:
        url_state.keep_valid(f"filter {col}", values, [])
        selected[col] = st.sidebar.multiselect(AXIS_LABELS.get(col, col), values,
                                               placeholder="all", key=f"filter {col}")
url_state.write({"sweep": name,
                 "metric": "" if metric is OUTPUT_TOK_S else metric.key,
                 "latency": "" if latency.key == DEFAULT_LATENCY else latency.key,
                 "baseline": "" if baseline == default_base else str(baseline),
                 **{col: [str(v) for v in values] for col, values in selected.items()}})


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
    # The runs in the label: a metric's value is cut where it outgrows its column.
    c[4].metric("duration" + (f" ({row['runs']} runs)" if row["runs"] > 1 else ""),
                format_duration(row["duration_s"]) or "—",
                help="the sum of its coordinators' runs, each from its start to its end (or "
                     "now, or the last heartbeat of a lost one)")
    if row["total"]:
        st.progress(float(row["progress"]))

    df = results
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
    summary = summarize(filtered, baseline, metric)
    if summary.empty:
        st.info("No result matches these filters.", icon=":material/filter_alt_off:")
        return
    if hidden:
        st.caption(f"{hidden} result(s) of jobs no longer in the sweep file are "
                   f"not shown (`orchestrate results {md(name)} --all` lists them).")
    missing = int((summary["n"] == 0).sum())
    if missing:
        st.caption(f"{missing} configuration(s) have no {md(metric.label)} figure (their "
                   f"engine did not report it): shown as missing (—), never as 0.")
    _best(summary, baseline)

    st.subheader(f"{md(metric.title)} over max_num_seqs × gpu_memory_utilization")
    st.altair_chart(charts.heatmap(summary, metric), width="content")

    st.subheader(f"Speedup against {md(baseline)}")
    if summary["speedup"].notna().any():
        st.altair_chart(charts.speedup_bars(summary, metric), width="stretch")
        st.caption(f"In {md(metric.label)}, "
                   + ("higher is better" if metric.higher_is_better else
                      "lower is better: the speedup is the baseline's over this one")
                   + ". Black: the 95% interval (Fieller); dashed: 1.0×; pale grey: not "
                     "distinguishable from the baseline at this n.")
    table = charts.speedup_table(summary, metric)
    st.dataframe(
        table, hide_index=True, width="stretch", key="speedup_table",
        column_config={
            metric.title: st.column_config.NumberColumn(format=_printf(metric.fmt)),
            "± 95% CI": st.column_config.TextColumn(help="half-width of the 95% interval of "
                                                         "the mean (Student t)"),
            "noisy": st.column_config.CheckboxColumn(help="coefficient of variation over 5%: "
                                                          "repeat before trusting it"),
            "speedup": st.column_config.NumberColumn(format="%.2f×"),
            "speedup (95% interval)": st.column_config.TextColumn(
                help="Fieller's 95% interval of the ratio of the two means, Welch degrees "
                     "of freedom"),
        })

    st.subheader(f"{md(metric.title)} against max_num_seqs")
    st.altair_chart(charts.metric_lines(summary, filtered, metric), width="stretch")

    st.subheader(f"Output tok/s against {md(latency.label)}")
    points = charts.latency_throughput(summary, latency)
    if points.empty:
        st.info(f"No configuration here has a {md(latency.label)} figure: its engine reported "
                f"no latencies (vllm does with its latency_metrics option).",
                icon=":material/timer_off:")
    else:
        st.altair_chart(charts.pareto_chart(points, latency), width="stretch")
        st.caption("A line per variant through its max_num_seqs (each point labelled with "
                   "it); ringed and joined by the dashed line: the Pareto front, where no "
                   "other configuration on the same model, workload and card has both a lower "
                   "latency and a higher throughput.")

    csv = with_speedups(filtered, summary).to_csv(index=False)
    st.download_button("Download results (CSV)", csv, file_name=f"{name}.csv",
                       mime="text/csv", icon=":material/download:")
    _failures()
    _jobs_table()
    _timeline()


def _timeline() -> None:
    """Every attempt on its host and GPU, and where the GPU time went."""
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
                     "efficiency": st.column_config.NumberColumn(format="percent"),
                     "engine starts": st.column_config.NumberColumn(
                         format="percent", help="share of the GPU time held spent starting "
                         "engines (load, profile, compile, capture, warm-up)")})


def _config(row) -> str:
    opts = "" if row["options"] == "{}" else f" {row['options']}"
    mml = "" if row["max_model_len"] != row["max_model_len"] or row["max_model_len"] is None \
        else f", max_model_len {int(row['max_model_len'])}"
    return (f"{md(row['variant'] + opts)}, max_num_seqs {row['max_num_seqs']}, "
            f"gpu_memory_utilization {row['gpu_memory_utilization']:g}{mml}")


def _printf(fmt: str) -> str:
    """A metric's format as st.column_config's printf format."""
    return "%" + fmt.replace(",", "")


def _best(summary, baseline: str) -> None:
    """The best configuration in the metric, crowned only where it is distinguishably better
    than every other on the same model, workload and card."""
    best = charts.best_config(summary, metric)
    if best is None:
        return
    ci = "" if math.isnan(best["ci95"]) else f" ± {best['ci95']:{metric.fmt}}"
    figure = f"**{best['mean']:{metric.fmt}} {metric.unit}**{ci} (n={best['n']})"
    ties = charts.rivals(summary, best, metric)
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
