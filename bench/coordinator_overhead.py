"""Coordinator overhead: (a) expanding a 20,000-job sweep and inserting it into the
database; (b) a sweep of N jobs whose engine work is negligible (tiny model, 1 sequence,
1 output token) on the local executor: jobs/s dispatched and per-job overhead.

    python bench/coordinator_overhead.py --jobs 1000 --slots 2 [--db URL]

Per-job overhead is what the coordinator adds around a job's own process: the slot-time
each job took (wall x slots / jobs) minus the job process's own wall time (spawn, torch
import, model load, generate), which the attempt records.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import textwrap
import time

from sqlalchemy import func, select

from db.models import Attempt
from db.store import Store
from orchestrator.executors.local import LocalExecutor
from orchestrator.run import record_jobs, run_sweep
from orchestrator.spec import parse

EXPAND = textwrap.dedent("""\
    name: expand20k
    model: {arch: qwen2-1.5b}
    variants: {a: {kind: hf}, b: {kind: hf, options: {attn_implementation: eager}}}
    matrix:
      max_num_seqs: [%s]
      gpu_memory_utilization: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    repeats: 10
    """) % ", ".join(str(i) for i in range(1, 101))

TINY = textwrap.dedent("""\
    name: overhead
    model: {arch: tiny}
    workload: {num_seqs: 1, input_len: [1, 1], output_len: [1, 1]}
    variants: {hf: {kind: hf}}
    matrix: {max_num_seqs: [1]}
    repeats: %d
    timeout_s: 120
    """)


def bench_expand(url: str) -> None:
    t0 = time.perf_counter()
    spec = parse(EXPAND)
    planned = spec.expand()
    t1 = time.perf_counter()
    store = Store(url)
    t2 = time.perf_counter()
    record_jobs(spec, store)
    t3 = time.perf_counter()
    print(f"expand {len(planned)} jobs: {t1 - t0:.2f} s; database insert: {t3 - t2:.2f} s "
          f"({len(planned) / (t3 - t2):,.0f} jobs/s) [{store.engine.url.get_backend_name()}]")
    store.close()


def bench_run(url: str, jobs: int, slots: int) -> None:
    spec = parse(TINY % jobs)
    store = Store(url)
    t0 = time.perf_counter()
    executor = LocalExecutor(cpu_slots=slots)
    t1 = time.perf_counter()
    # run_sweep shuts the executor down: the time from its last outcome is not the sweep's.
    ended = []

    def last_outcome(_job, _outcome) -> None:
        ended[:] = [time.perf_counter()]

    summary = run_sweep(spec, store, lambda: executor, on_attempt=last_outcome)
    t2 = ended[0] if ended else time.perf_counter()
    with store.session() as s:
        n, proc_s = s.execute(select(func.count(), func.sum(Attempt.elapsed_s))).one()
    wall = t2 - t1
    per_job_slot_s = wall * slots / n
    print(f"ray start: {t1 - t0:.2f} s; {n} jobs on {slots} slot(s) in {wall:.1f} s: "
          f"{n / wall:.2f} jobs/s; outcomes {summary.outcomes}")
    overhead_ms = 1000 * (per_job_slot_s - proc_s / n)
    print(f"per job: {per_job_slot_s * 1000:.0f} ms of slot time, of which the job process "
          f"{proc_s / n * 1000:.0f} ms; coordinator overhead {overhead_ms:.0f} ms/job")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=1000)
    p.add_argument("--slots", type=int, default=2)
    p.add_argument("--db", help="database URL (default: a fresh SQLite file)")
    p.add_argument("--skip-run", action="store_true")
    a = p.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    with tempfile.TemporaryDirectory() as tmp:
        bench_expand(a.db or f"sqlite:///{tmp}/expand.db")
        if not a.skip_run:
            bench_run(a.db or f"sqlite:///{tmp}/run.db", a.jobs, a.slots)


if __name__ == "__main__":
    main()
