import json
import os
import re
import signal
import subprocess
import sys

import pandas as pd
import pytest

from tests.e2e.conftest import (
    ROOT,
    bench_processes,
    kill_group,
    orchestrate,
    orchestrate_env,
    query,
    start,
    sweep_file,
    wait_for,
)
from tests.orchestrator.test_cli_logs import Reader

pytestmark = pytest.mark.e2e


def test_sweep_resume_results_export(tmp_path, cache_dir, db_url):
    env = orchestrate_env(cache_dir, db_url)
    spec = sweep_file(tmp_path, repeats=2, matrix="max_num_seqs: [2]",
                      variants="  nano-sync: {kind: nano, options: {async_scheduling: false}}")
    first = orchestrate(env, "sweep", str(spec))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "4 jobs, 0 already done" in first.stdout
    assert query(db_url, "SELECT state, count(*) FROM jobs GROUP BY state") == [("succeeded", 4)]
    rows = query(db_url, "SELECT output_tokens, record FROM results")
    for tokens, record in rows:
        record = json.loads(record) if isinstance(record, str) else record
        assert tokens == record["output_tokens"] == record["requested_output_tokens"]
        assert record["elapsed_s"] > 0 and record["workload_fingerprint"]

    again = orchestrate(env, "sweep", str(spec))
    assert again.returncode == 0 and "4 already done, attempts this run: none" in again.stdout
    assert query(db_url, "SELECT count(*) FROM attempts") == [(4,)]

    table = orchestrate(env, "results", "e2e")
    assert table.returncode == 0, table.stderr
    assert "nano-sync" in table.stdout and "1.00×" in table.stdout

    status = orchestrate(env, "status")
    assert "e2e" in status.stdout and status.returncode == 0

    for fmt, read in (("csv", pd.read_csv), ("json", pd.read_json),
                      ("parquet", pd.read_parquet)):
        out = tmp_path / f"r.{fmt}"
        done = orchestrate(env, "export", "e2e", "--format", fmt, "-o", str(out))
        assert done.returncode == 0, done.stderr
        df = read(out)
        assert len(df) == 4 and set(df["variant"]) == {"nano", "nano-sync"}


def test_repeats_share_one_engine_start(tmp_path, cache_dir):
    """reuse: repeats: the three repeats of the one configuration run in one job process,
    one engine start among them, each its own result and attempt."""
    db = f"sqlite:///{tmp_path / 'r.db'}"
    env = orchestrate_env(cache_dir, db)
    spec = sweep_file(tmp_path, repeats=3, matrix="max_num_seqs: [2]", extra="reuse: repeats\n")
    run = orchestrate(env, "sweep", str(spec))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 jobs, 0 already done, attempts this run: 3 succeeded" in run.stdout
    assert query(db, "SELECT state, count(*) FROM jobs GROUP BY state") == [("succeeded", 3)]
    rows = query(db, "SELECT j.repeat, r.record FROM results r JOIN jobs j ON j.id = r.job_id "
                     "ORDER BY j.repeat")
    records = [json.loads(r) if isinstance(r, str) else r for _, r in rows]
    assert [r["engine_shared"] for r in records] == [0, 1, 2]
    assert [r["load_s"] > 0 for r in records] == [True, False, False]  # one engine start
    for r in records:
        assert r["output_tokens"] == r["requested_output_tokens"] and r["elapsed_s"] > 0
    # Each attempt its own part of the time the process held the slot.
    spans = query(db, "SELECT started_at, finished_at FROM attempts ORDER BY job_id")
    assert [a[1] for a in spans[:-1]] == [b[0] for b in spans[1:]]

    again = orchestrate(env, "sweep", str(spec))
    assert again.returncode == 0 and "3 already done, attempts this run: none" in again.stdout
    table = orchestrate(env, "results", "e2e")
    assert table.returncode == 0 and "nano" in table.stdout, table.stderr


def test_timeout_and_failure_do_not_stop_the_sweep(tmp_path, cache_dir):
    db = f"sqlite:///{tmp_path / 'b.db'}"
    env = orchestrate_env(cache_dir, db)
    # slow: the transformers engine, whose start alone takes longer than 1 s.
    spec = sweep_file(tmp_path, variants="  slow: {kind: hf, timeout_s: 1}",
                      matrix="variant: [slow, nano], max_num_seqs: [4], "
                             "max_model_len: [16, 4096]", extra="retries: 1\n")
    run = orchestrate(env, "sweep", str(spec))
    assert run.returncode == 1 and "job(s) failed" in run.stderr
    outcomes = query(db, "SELECT j.id, j.variant, a.outcome, a.error_kind FROM jobs j "
                         "JOIN attempts a ON a.job_id = j.id ORDER BY j.ordinal, a.id")
    kinds = {(v, o, k) for _, v, o, k in outcomes}
    assert ("slow", "timeout", "timeout") in kinds
    assert ("nano", "failed", "bad_input") in kinds  # prompts longer than max_model_len 16
    assert ("nano", "succeeded", None) in kinds
    # A timeout may not happen again: retried once (retries: 1). A bad input will: never.
    by_job: dict[int, list[str]] = {}
    for job_id, _, _, kind in outcomes:
        by_job.setdefault(job_id, []).append(kind)
    for attempts in by_job.values():
        assert attempts in ([None], ["bad_input"], ["timeout", "timeout"],
                            ["timeout", "bad_input"]), by_job
    assert not bench_processes(env)
    status = orchestrate(env, "status", "e2e")
    assert "timed out after 1 s" in status.stdout and "max_model_len" in status.stdout


def test_sigkilled_coordinator_resumes_without_loss_or_duplicates(tmp_path, cache_dir):
    db = f"sqlite:///{tmp_path / 'k.db'}"
    env = orchestrate_env(cache_dir, db)
    spec = sweep_file(tmp_path, repeats=3)
    proc = start(env, "sweep", str(spec))
    wait_for(lambda: query(db, "SELECT count(*) FROM results")[0][0] >= 2
             and query(db, "SELECT count(*) FROM attempts WHERE outcome = 'running'")[0][0],
             180, "two results and a running attempt")
    os.kill(proc.pid, signal.SIGKILL)  # the coordinator alone, as a crash would
    proc.wait()
    wait_for(lambda: not bench_processes(env), 30, "the orphaned job process to die")
    rerun = orchestrate(env, "sweep", str(spec))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "marked lost" in rerun.stdout
    assert query(db, "SELECT state, count(*) FROM jobs GROUP BY state") == [("succeeded", 6)]
    assert query(db, "SELECT count(*), count(DISTINCT job_id) FROM results") == [(6, 6)]
    assert query(db, "SELECT count(*) FROM attempts WHERE outcome = 'lost'")[0][0] >= 1
    assert query(db, "SELECT count(*) FROM attempts WHERE outcome = 'running'") == [(0,)]
    assert query(db, "SELECT ended FROM sweep_runs ORDER BY id") == [("lost",), ("finished",)]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                         ids=["ctrl_c", "sigterm", "sighup"])
def test_stop_signal_cancels_cleanly_and_resumes(tmp_path, cache_dir, sig):
    """Ctrl-C, SIGTERM (kill, systemd, a container's stop) and SIGHUP (a closed SSH session)
    all stop a sweep alike: job groups killed, attempts cancelled, lease released."""
    db = f"sqlite:///{tmp_path / 'c.db'}"
    env = orchestrate_env(cache_dir, db)
    spec = sweep_file(tmp_path, repeats=2)
    proc = start(env, "sweep", str(spec))
    wait_for(lambda: query(db, "SELECT count(*) FROM attempts WHERE outcome = 'running'")[0][0],
             180, "a running attempt")
    wait_for(lambda: bench_processes(env), 60, "its job process")
    os.kill(proc.pid, sig)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, output
    assert f"interrupted ({sig.name})" in output and "Traceback" not in output, output
    assert query(db, "SELECT count(*) FROM attempts WHERE outcome = 'cancelled'") == [(1,)]
    assert query(db, "SELECT count(*) FROM attempts WHERE outcome = 'running'") == [(0,)]
    assert query(db, "SELECT count(*) FROM jobs WHERE state = 'running'") == [(0,)]
    assert query(db, "SELECT owner FROM sweeps") == [(None,)]
    assert query(db, "SELECT ended, signal FROM sweep_runs") == [("stopped", sig.name)]
    wait_for(lambda: not bench_processes(env), 30, "the cancelled job process to die")
    if sig != signal.SIGINT:
        return  # resuming is the same path whichever signal stopped the run
    rerun = orchestrate(env, "sweep", str(spec))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert query(db, "SELECT count(*) FROM results") == [(4,)]


def test_a_running_jobs_log_is_followed_before_it_ends(tmp_path, cache_dir):
    """`orchestrate logs --follow` beside the coordinator: the job's first line shows while
    it runs (a job of a minute or more); when the sweep is stopped, the follower ends with
    the attempt, exit 1 (cancelled)."""
    db = f"sqlite:///{tmp_path / 'f.db'}"
    env = orchestrate_env(cache_dir, db)
    spec = sweep_file(tmp_path, "follow", matrix="max_num_seqs: [2]")
    spec.write_text(spec.read_text().replace("num_seqs: 4,", "num_seqs: 64,")
                    .replace("output_len: [2, 6]", "output_len: [400, 400]"))
    proc = start(env, "sweep", str(spec))
    follower = None
    try:
        running = "SELECT job_id FROM attempts WHERE outcome = 'running'"
        wait_for(lambda: query(db, running), 180, "a running attempt")
        ((job,),) = query(db, running)
        follower = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "logs", str(job),
                                     "--follow"], env=env, cwd=ROOT, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        shown = Reader(follower)
        while "[benchsweep] job 1 of 1: nano, max_num_seqs 2, repeat 0" not in shown.next():
            pass
        assert query(db, running) == [(job,)]  # seen before the job ended
        os.kill(proc.pid, signal.SIGINT)
        assert follower.wait(60) == 1
        assert follower.stderr.read() == f"attempt 1 of job {job}: cancelled\n"
        proc.communicate(timeout=60)
        assert proc.returncode == 130
    finally:
        kill_group(proc)
        if follower is not None:
            follower.kill()
            follower.wait()


def test_leftover_check_sees_only_this_tests_jobs(tmp_path, cache_dir):
    """A job process of another run (same command line, another database) is not ours."""
    env = orchestrate_env(cache_dir, f"sqlite:///{tmp_path / 'mine.db'}")
    other = dict(env, BENCHSWEEP_DB=f"sqlite:///{tmp_path / 'other.db'}")
    sleeper = "import time; time.sleep(60)"
    procs = [subprocess.Popen([sys.executable, "-c", sleeper, "-m", "engine.bench", "--job",
                               "x"], env=e) for e in (env, other)]
    try:
        wait_for(lambda: procs[0].pid in bench_processes(env), 10, "the job-like process")
        assert bench_processes(env) == [procs[0].pid]
        assert bench_processes(other) == [procs[1].pid]
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_sweep_without_a_terminal_logs_each_job_at_the_coordinator_s_nice(tmp_path, cache_dir):
    """stdout a pipe: one line per finished job instead of Rich's silent progress bar. The
    coordinator runs at nice 3 and every job, started through Ray's workers (nice 15 by
    default), reads nice 3 from its own /proc/self/stat."""
    db = f"sqlite:///{tmp_path / 'n.db'}"
    env = orchestrate_env(cache_dir, db)
    spec = sweep_file(tmp_path)
    run = subprocess.run(["nice", "-n", "3", sys.executable, "-m", "orchestrator.cli", "sweep",
                          str(spec)], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = [ln for ln in run.stdout.splitlines() if " job " in ln]
    assert len(lines) == 2, run.stdout
    for n, line in zip((2, 4), sorted(lines, key=lambda ln: "max_num_seqs=4" in ln),
                       strict=True):
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d job \d nano "
                            rf"max_num_seqs={n} gpu_mem=0\.9 repeat=0: succeeded "
                            r"[\d,]+\.\d tok/s( \(disturbed: .+\))?", line), line
    records = [json.loads(r) if isinstance(r, str) else r
               for (r,) in query(db, "SELECT record FROM results")]
    assert len(records) == 2
    for rec in records:
        cond = rec["conditions"]
        assert (cond["nice"], cond["nice_asked"]) == (3, 3)
        assert cond["cpu_affinity"] and cond["cpu_s"] > 0 and cond["load_before"] is not None
        assert isinstance(rec["disturbed"], list)
