"""Dashboard load time on a large database: 100 sweeps x 500 jobs (50,000 jobs, attempts and
results), written through db.store.Store's write API like the coordinator writes them.

    python bench/dashboard_load.py [--sweeps 100] [--jobs 500] [--db PATH] [--browser]

Each page is run the way the server runs it (streamlit.testing AppTest: the page script with
its queries, frames and charts, no browser); the figure is the slowest page. The first run
in a fresh process also pays the imports (pandas, altair, SQLAlchemy), as the first visitor
of a freshly started server does. --browser adds the wall time of headless chromium loading
each page from a real server (browser start included).

The database is kept at --db and reused when it already holds the requested size.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select, update  # noqa: E402

from db.models import Job, Sweep, SweepRun, utcnow  # noqa: E402
from db.store import Store  # noqa: E402
from engine.result import BenchResult  # noqa: E402

APP = ROOT / "dashboard" / "app.py"
VARIANTS = {"nano": {}, "nano-fused": {"fuse_rmsnorm_linear": True},
            "nano-layout": {"kv_layout": "hnd"}, "nano-kvpat": {"kv_access": "blocked"},
            "vllm": {}}
FACTORS = {"nano": 1.0, "nano-fused": 1.07, "nano-layout": 1.03, "nano-kvpat": 0.98,
           "vllm": 1.12}
MNS = [16, 32, 64, 128, 256]
GMU = [0.8, 0.85, 0.9, 0.95]
CARD = "NVIDIA H100 80GB HBM3"
OWNER = "coordinator:1"


def plan(jobs: int) -> list[dict]:
    """`jobs` job configurations: variants x max_num_seqs x gpu_memory_utilization x
    repeats, cut to size."""
    grid = [(v, m, g) for v in VARIANTS for m in MNS for g in GMU]
    out = []
    for i in range(jobs):
        v, m, g = grid[i % len(grid)]
        out.append({"variant": v, "max_num_seqs": m, "gpu_memory_utilization": g,
                    "repeat": i // len(grid)})
    return out


def synthesize(url: str, sweeps: int = 100, jobs: int = 500, *, seed: int = 0,
               running: bool = True, failing: bool = True) -> Store:
    """Fill a database with `sweeps` sweeps of `jobs` finished jobs each, through the write
    API. Every tenth sweep has a few failures; with `failing` one sweep has nothing but
    failures; with `running` the last sweep is still running (a live coordinator, jobs
    running and pending)."""
    rnd = random.Random(seed)
    store = Store(url)
    for s in range(sweeps):
        name = f"phase2-{s:03d}"
        sid = store.upsert_sweep(name, f"name: {name}\nsynthetic: true\n", "nano")
        fp = f"{(s // 10):016x}"  # ten sweeps share a workload
        configs = plan(jobs)
        store.add_jobs(sid, [
            dict(key=f"{name}-{i}", ordinal=i, variant=c["variant"],
                 engine="vllm" if c["variant"] == "vllm" else "nano",
                 options=VARIANTS[c["variant"]], model="qwen2-1.5b", workload="standard",
                 workload_fingerprint=fp, max_num_seqs=c["max_num_seqs"],
                 gpu_memory_utilization=c["gpu_memory_utilization"], repeat=c["repeat"],
                 spec="{}")
            for i, c in enumerate(configs)
        ])
        pending = store.pending_jobs(sid, [f"{name}-{i}" for i in range(jobs)])
        live = running and s == sweeps - 1
        all_fail = failing and s == sweeps - 2
        store.acquire(sid, OWNER, stale_after=timedelta(seconds=60), owner_alive=lambda _o: True)
        if live:  # a heartbeat that stays fresh while the database is used
            with store.session() as ses:
                ses.execute(update(Sweep).where(Sweep.id == sid).values(
                    heartbeat_at=utcnow() + timedelta(days=3650)))
                ses.execute(update(SweepRun).where(SweepRun.sweep_id == sid).values(
                    beat_at=utcnow() + timedelta(days=3650)))
        for n, job in enumerate(pending):
            host, gpu = f"gpu-box-{n % 4}", str(n % 8)
            if live and n >= jobs // 2:
                if n < jobs // 2 + 8:
                    store.start_attempt(job.id, host, gpu)
                continue  # pending
            at = store.start_attempt(job.id, host, gpu)
            if all_fail or (s % 10 == 9 and n % 50 == 7):
                store.finish_attempt(at, "failed", job_state="failed", error_kind="oom",
                                     error="CUDA out of memory while capturing graphs",
                                     log_tail="torch.OutOfMemoryError: CUDA out of memory",
                                     elapsed_s=12.0)
                continue
            tok_s = (2000 * FACTORS[job.variant] * math.sqrt(job.max_num_seqs / 16)
                     * (0.9 + job.gpu_memory_utilization / 10) * rnd.gauss(1, 0.02))
            elapsed = 144831 / tok_s
            result = BenchResult(
                engine=job.engine, variant=job.variant, model=job.model,
                workload=job.workload, workload_fingerprint=fp, num_seqs=256,
                max_num_seqs=job.max_num_seqs,
                gpu_memory_utilization=job.gpu_memory_utilization, prompt_tokens=140000,
                requested_output_tokens=144831, output_tokens=144831, elapsed_s=elapsed,
                load_s=2.1, profile_s=0.4, compile_s=0.0, capture_s=3.2, warmup_s=0.8,
                kv_blocks=4000, block_size=256, kv_tokens=1024000,
                peak_memory_bytes=70 * 2**30, device="cuda", options=job.options,
                env={"gpu": {"name": CARD}, "torch": "2.13.0", "cuda": "12.8"})
            store.finish_attempt(at, "succeeded", job_state="succeeded", result=result,
                                 elapsed_s=elapsed + 8)
        if not live:  # a run of an hour
            store.release(sid, OWNER)
            with store.session() as ses:
                ses.execute(update(Sweep).where(Sweep.id == sid).values(
                    last_started_at=utcnow() - timedelta(hours=1)))
                ses.execute(update(SweepRun).where(SweepRun.sweep_id == sid).values(
                    started_at=utcnow() - timedelta(hours=1)))
    return store


def job_count(url: str) -> int:
    try:
        store = Store(url, upgrade=False)
    except Exception:  # noqa: BLE001 - no usable database yet
        return -1
    with store.session() as s:
        n = s.scalar(select(func.count()).select_from(Job))
    store.close()
    return n


def time_pages(url: str, sweep: str, job_id: int) -> list[tuple[str, float, float]]:
    """(page, first run s, median of 3 later runs s) per page, in one fresh session each."""
    os.environ["BENCHSWEEP_DB"] = url
    from streamlit.testing.v1 import AppTest

    pages = [("Sweeps", None, {}), ("Sweep", "views/sweep.py", {"sweep": sweep}),
             ("Job", "views/job.py", {"job": str(job_id)}),
             ("Compare", "views/compare.py", {"a": sweep}), ("Hosts", "views/hosts.py", {})]
    out = []
    for title, path, params in pages:
        times = []
        for _ in range(4):
            at = AppTest.from_file(str(APP), default_timeout=60)
            if path:
                at.run()  # land on the default page first, as a visitor following a link
                at.switch_page(path)
            at.query_params = dict(params)
            t = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - t)
            if at.exception:
                raise RuntimeError(f"{title}: {at.exception[0].value}")
        out.append((title, times[0], statistics.median(times[1:])))
    return out


def time_browser(url: str, sweep: str, job_id: int, port: int = 8765) -> list[tuple[str, float]]:
    env = dict(os.environ, BENCHSWEEP_DB=url)
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true",
         "--browser.gatherUsageStats", "false"], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        time.sleep(6)
        out = []
        for title, path in (("Sweeps", ""), ("Sweep", f"sweep?sweep={sweep}"),
                            ("Job", f"job?job={job_id}"), ("Compare", "compare"),
                            ("Hosts", "hosts")):
            with tempfile.TemporaryDirectory() as profile:
                t = time.perf_counter()
                subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                                "--disable-quic", "--no-first-run",
                                "--disable-background-networking",
                                "--disable-component-update", "--disable-sync",
                                f"--user-data-dir={profile}", "--virtual-time-budget=10000",
                                "--dump-dom", f"http://127.0.0.1:{port}/{path}"],
                               capture_output=True, timeout=120)
                out.append((title, time.perf_counter() - t))
        return out
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweeps", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--db", default=str(Path(tempfile.gettempdir()) / "dashboard_load.db"))
    ap.add_argument("--browser", action="store_true")
    args = ap.parse_args()
    url = args.db if "://" in args.db else f"sqlite:///{args.db}"
    want = args.sweeps * args.jobs
    if job_count(url) != want:
        if "://" not in args.db:
            for suffix in ("", "-wal", "-shm"):
                Path(args.db + suffix).unlink(missing_ok=True)
        t = time.perf_counter()
        synthesize(url, args.sweeps, args.jobs).close()
        print(f"wrote {args.sweeps} sweeps x {args.jobs} jobs through the write API in "
              f"{time.perf_counter() - t:.0f} s")
    sweep = f"phase2-{args.sweeps - 3:03d}"
    store = Store(url, upgrade=False)
    with store.session() as s:
        job_id = s.scalar(select(func.max(Job.id)).join(Sweep).where(Sweep.name == sweep))
    store.close()
    rows = time_pages(url, sweep, job_id)
    print(f"\n{args.sweeps} sweeps x {args.jobs} jobs, page script run (AppTest)")
    print(f"{'page':<10}{'first run s':>14}{'later runs s':>14}")
    for title, first, later in rows:
        print(f"{title:<10}{first:>14.3f}{later:>14.3f}")
    worst = max(max(f, lt) for _, f, lt in rows)
    print(f"slowest: {worst:.3f} s")
    if args.browser:
        print("\nheadless chromium, wall time per page (browser start included)")
        for title, secs in time_browser(url, sweep, job_id):
            print(f"{title:<10}{secs:>14.2f}")


if __name__ == "__main__":
    main()
