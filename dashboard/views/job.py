"""Job: one job with its attempts, its BenchResult (marked where its GPU throttled or was
shared), its start-time breakdown, the environment it ran in, its GPU's telemetry over an
attempt's time (phases shaded, throttling marked), and an attempt's log (its last lines,
progress bars collapsed, and the whole of it to download); follows the job while it runs,
its log as output comes in. The URL (?job=ID) is shareable."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from dashboard import charts
from dashboard.common import badge, follow, gib, link, md, param, state_css, store, when
from db.read.jobs import job_detail, sweep_jobs
from db.read.logs import attempt_log, collapse_frames
from db.read.profiles import step_categories
from db.read.sweeps import LOST_ATTEMPT, sweeps_frame
from db.read.telemetry import (
    MARK_HELP,
    MARK_TITLE,
    attempt_gpu,
    gpu_mark,
    summary_text,
    telemetry_of,
)

LOG_LINES = 200  # the log's last lines shown; the download has them all
RESULT_FIGURES = ("output_tok_s", "total_tok_s", "prefill_tok_s", "decode_tok_s", "elapsed_s",
                  "output_tokens", "requested_output_tokens", "prompt_tokens", "num_seqs",
                  "start_s", "kv_blocks", "block_size", "kv_tokens", "peak_memory_bytes",
                  "device", "workload_fingerprint")

db = store()
raw = param("job")
job_id = int(raw) if raw and raw.isdigit() else None
follow(db, job_id)  # a running job's attempts as they start and end, its output as it comes


def pick() -> None:
    """No job named in the URL: choose one from a sweep."""
    sweeps = sweeps_frame(db)
    if sweeps.empty:
        st.info("No sweeps yet, so no jobs. Run one with `orchestrate sweep "
                "sweeps/demo.yaml`.", icon=":material/info:")
        return
    names = sweeps.sort_values("started", ascending=False, kind="stable")["name"].tolist()
    name = st.selectbox("sweep", names, key="job_sweep")
    jobs = sweep_jobs(db, name)
    if jobs.empty:
        st.info(f"Sweep {md(name)} has no jobs.")
        return
    labels = {int(r.job_id): f"#{r.job_id}  {r.variant}  max_num_seqs {r.max_num_seqs}  "
                             f"mem {r.gpu_memory_utilization:g}  repeat {r.repeat}  "
                             f"({r.state})" for r in jobs.itertuples()}
    chosen = st.selectbox("job", list(labels), format_func=labels.get, key="job_pick")
    if st.button("Open job", icon=":material/open_in_new:"):
        st.query_params["job"] = str(chosen)
        st.rerun()


def _figure(name: str, v) -> str:
    if name.endswith("_bytes"):
        return gib(v)
    return f"{v:,.3f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v)


st.title("Job" + (f" #{job_id}" if job_id else ""))
if raw and job_id is None:
    st.warning(f"{md(raw)} is not a job id.", icon=":material/help:")
job = job_detail(db, job_id) if job_id else None
if job_id and job is None:
    st.warning(f"There is no job #{job_id} in this database.", icon=":material/help:")
if job is None:
    pick()
    st.stop()

link("sweep", f"sweep {job['sweep']}", sweep=job["sweep"])
opts = json.dumps(job["options"], sort_keys=True) if job["options"] else "defaults"
mml = job["max_model_len"] if job["max_model_len"] is not None else "default"
st.markdown(
    f"**{md(job['variant'])}** ({md(job['engine'])}, options {md(opts)}) · model "
    f"{md(job['model'])} · workload {md(job['workload'])} (fingerprint "
    f"`{job['workload_fingerprint']}`) · max_num_seqs **{job['max_num_seqs']}** · "
    f"gpu_memory_utilization **{job['gpu_memory_utilization']:g}** · max_model_len "
    f"**{mml}** · repeat {job['repeat']} · state {badge(job['state'])} · key `{job['key']}`")
if not job["current"]:
    st.caption("The sweep file as it reads now no longer has this job; its results are "
               "left out of the sweep's tables.")

st.subheader("Attempts")
attempts = pd.DataFrame(job["attempts"], columns=["number", "host", "gpu", "outcome",
                                                  "started_at", "finished_at", "duration_s",
                                                  "error_kind", "error", "log_tail"])
if attempts.empty:
    st.info("This job has not been attempted yet.", icon=":material/hourglass_empty:")
else:
    shown = attempts.drop(columns=["log_tail"]).fillna({"error_kind": "", "error": ""})
    st.dataframe(shown.style.map(state_css, subset=["outcome"]), hide_index=True,
                 width="stretch", key="attempts_table",
                 column_config={
                     "number": "attempt",
                     "started_at": st.column_config.DatetimeColumn("started (UTC)",
                                                                   format="YYYY-MM-DD HH:mm:ss"),
                     "finished_at": st.column_config.DatetimeColumn("finished (UTC)",
                                                                    format="YYYY-MM-DD HH:mm:ss"),
                     "duration_s": st.column_config.NumberColumn("duration s", format="%.1f"),
                 })

result = job["result"]
if result:
    rec, bench = result["record"], result["bench"]
    st.subheader("BenchResult")
    m = st.columns(5)
    m[0].metric("output tok/s", f"{bench.output_tok_s:,.1f}")
    m[1].metric("total tok/s", f"{bench.total_tok_s:,.1f}")
    m[2].metric("elapsed", f"{bench.elapsed_s:,.2f} s")
    m[3].metric("output tokens", f"{bench.output_tokens:,}")
    m[4].metric("start-up", f"{bench.start_s:,.2f} s")
    st.caption(f"measured on {md(result['host'])}, {md(result['gpu_name'])}")
    mark = gpu_mark(bench, telemetry_of(db, [result["attempt_id"]]).get(result["attempt_id"]))
    if mark:
        st.warning(md(f"{MARK_TITLE}: {mark}. {MARK_HELP}."), icon=":material/warning:")
    st.subheader("Start-up time, from the process's start")
    breakdown = charts.start_breakdown(rec)
    st.altair_chart(charts.start_chart(breakdown), width="stretch")
    st.caption("  ·  ".join(f"{r.phase} {r.seconds:.2f} s" for r in breakdown.itertuples())
               + " (imports: the job process's start and its imports, before the engine's "
                 "start-up; 0 for a repeat that shared an earlier one's process)")
    cond = bench.conditions
    if bench.engine_shared is None and cond.wall_s is not None and cond.result_at_s is not None:
        st.caption(f"After its result line the job process ran on for "
                   f"{max(0.0, cond.wall_s - cond.result_at_s):.2f} s: the engine's teardown "
                   f"(the runner's GPU checks come after it).")
    if cond.gpu_wait_before_s is not None and cond.gpu_wait_after_s is not None:
        st.caption(f"The runner's GPU-idle checks: {cond.gpu_wait_before_s:.2f} s before the "
                   f"job process started, {cond.gpu_wait_after_s:.2f} s after it ended"
                   + (" (one process for this configuration's repeats)"
                      if bench.engine_shared is not None else "") + ".")

    st.subheader("Roofline and kernels")
    line = bench.roofline
    if line is not None:
        r = st.columns(4)
        r[0].metric("floor", f"{line.floor_s:,.2f} s", help="the least time the workload's bytes "
                    "and FLOPs take at the card's measured copy bandwidth and matmul rate")
        r[1].metric("percent of floor", f"{bench.percent_of_floor:.0f}%")
        r[2].metric("copy bandwidth", f"{gib(line.copy_bytes_per_s)}/s")
        r[3].metric("matmul", f"{line.matmul_flops_per_s / 1e12:,.1f} TFLOP/s")
        st.caption(f"{md(line.card)} · prefill {gib(line.prefill_bytes)}, "
                   f"{line.prefill_flops / 1e12:,.2f} TFLOP, floor {line.prefill_floor_s:.3f} s · "
                   f"decode {gib(line.decode_bytes)}, {line.decode_flops / 1e12:,.2f} "
                   f"TFLOP, floor {line.decode_floor_s:.3f} s")
    else:
        st.caption("No roofline: the result predates it, or its model or card figures were "
                   "not at hand.")
    if bench.between_steps_s is not None:
        st.caption(f"The timed run: prefill steps {bench.prefill_s:.2f} s, decode steps "
                   f"{bench.decode_s:.2f} s, between steps {bench.between_steps_s:.2f} s")
    if bench.step_profiles:
        cats = step_categories(bench.step_profiles)
        st.altair_chart(charts.category_chart(cats), width="stretch")
        st.dataframe(cats.assign(ms=cats["seconds"] * 1e3).drop(columns="seconds"),
                     hide_index=True, width="stretch", key="category_table",
                     column_config={"ms": st.column_config.NumberColumn("ms a step",
                                                                        format="%.3f"),
                                    "share": st.column_config.NumberColumn(format="%.3f")})
        st.caption("  ·  ".join(
            f"{s.kind}: {s.seqs} seqs, {s.tokens:,} tokens, {s.context_tokens:,} in context, "
            f"{'graph' if s.graph else 'eager'}; {s.activity} busy {1e3 * s.busy_s:.3f} ms of "
            f"{1e3 * s.wall_s:.3f} ms alone (host {1e3 * s.host_gap_s:.3f} ms)"
            for s in bench.step_profiles))
    elif bench.profile_note:
        st.caption(f"No step profile: {md(bench.profile_note)}")

    left, right = st.columns(2)
    figures = pd.DataFrame([{"figure": k, "value": _figure(k, _v)} for k in RESULT_FIGURES
                            if (_v := getattr(bench, k)) is not None],
                           columns=["figure", "value"])
    left.subheader("Figures")
    left.dataframe(figures, hide_index=True, width="stretch", key="result_table")
    right.subheader("Environment")
    env = bench.env
    if env:
        right.dataframe(pd.DataFrame([{"name": k, "value": "" if v is None else str(v)}
                                      for k, v in env.items()]), hide_index=True,
                        width="stretch", key="env_table")
    else:
        right.caption("The result carries no environment record.")
    with st.expander("The whole BenchResult record (JSON)"):
        st.json(rec, expanded=False)
elif not attempts.empty:
    last = attempts.iloc[-1]
    if last["outcome"] == LOST_ATTEMPT:
        st.warning(f"Attempt {last['number']} was marked running on {md(last['host'])} / "
                   f"{md(last['gpu'])} since {when(last['started_at'])} UTC, but its coordinator "
                   f"is lost: whether it still runs is unknown. Rerunning the sweep marks it "
                   f"lost and runs the job again.", icon=":material/help:")
    elif last["outcome"] != "running":
        st.error(f"No result: the last attempt ended {last['outcome']}"
                 + (f" ({last['error_kind']})" if last["error_kind"] else "")
                 + (f": {md(last['error'])}" if last["error"] else ""), icon=":material/error:")
    else:
        st.info(f"Attempt {last['number']} is running on {md(last['host'])} / {md(last['gpu'])} "
                f"since {when(last['started_at'])} UTC.", icon=":material/autorenew:")


def telemetry(number: int) -> None:
    """The GPU of attempt `number` over its time; its result's timed generate summarised."""
    gpu = attempt_gpu(db, job_id, number)
    if gpu is None:
        st.caption(f"Attempt {number} has no GPU telemetry (a CPU slot, no NVML on its host, "
                   f"an attempt still running, cancelled or lost, or one recorded before "
                   f"telemetry was).")
        return
    if not len(gpu.telemetry):
        st.caption(f"Attempt {number} took no GPU sample: its first read of the GPU failed, "
                   f"or its process ended at once.")
        return
    st.altair_chart(charts.telemetry_chart(charts.telemetry_frame(gpu.telemetry),
                                           charts.phase_frame(gpu.phases)), width="stretch")
    caption = f"Attempt {number}: {len(gpu.telemetry)} sample(s), one every " \
              f"{gpu.telemetry.period_s:g} s; red points: the GPU slowed by heat, a hardware " \
              f"slowdown or a power brake (the power cap alone is not marked)."
    if gpu.result is not None:
        caption += " Shaded: the engine start and the timed generate. " + \
            summary_text(gpu.summary)
    st.caption(md(caption))


if not attempts.empty:
    st.subheader("GPU telemetry")
    _numbers = attempts["number"].tolist()
    _n = st.selectbox("attempt", _numbers, index=len(_numbers) - 1, key="gpu_attempt") \
        if len(_numbers) > 1 else _numbers[0]
    telemetry(int(_n))

if not attempts.empty:
    st.subheader("Log")
    numbers = attempts["number"].tolist()
    n = st.selectbox("attempt", numbers, index=len(numbers) - 1, key="log_attempt") \
        if len(numbers) > 1 else numbers[0]
    log = attempt_log(db, job_id, int(n))
    text = collapse_frames(log.text)
    lines = text.splitlines()
    if not text:
        st.caption(f"Attempt {n} has no output yet." if log.outcome == "running"
                   else f"Attempt {n} left no log.")
    else:
        if len(lines) > LOG_LINES:
            st.caption(f"The last {LOG_LINES} of {len(lines):,} lines; the download has them "
                       f"all.")
        # st.code: the job's text as it is, never Markdown.
        st.code("\n".join(lines[-LOG_LINES:]), language=None, wrap_lines=True)
        st.download_button("Download the whole log", text, mime="text/plain",
                           file_name=f"job-{job_id}-attempt-{n}.log", key="log_download",
                           icon=":material/download:")
    if log.outcome == "running":
        st.caption("Running: its output shows here as it comes in.")
    elif text and not log.streamed:
        st.caption("Only the end of this attempt's output was kept (it ran before whole logs "
                   "were).")
