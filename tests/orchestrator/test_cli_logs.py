"""`orchestrate logs` on a database filled through the store: the latest attempt's output or
another's, progress bars collapsed, a job named by its id or by its sweep and ordinal, one
line and exit 2 for a job that is not there (and no database made); `--follow` as a user
runs it (a real process) against a writer process that appends output and then ends the
attempt: what comes in is printed while it runs, and the exit code is the attempt's."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from db.store import STALE_AFTER, Store
from orchestrator.cli import app
from tests.db.test_store import _job

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 60  # the most a line may take to show: far more than it does


def orchestrate(db: str, *args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200")
    return subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "logs", *args,
                             "--db", db], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def ran(db: str, *args: str) -> tuple[int, str, str]:
    """In this process (a process of its own costs seconds on a busy machine)."""
    result = CliRunner().invoke(app, ["logs", *args, "--db", db], env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


class Reader:
    """The lines a process prints, as they come."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(proc.stdout,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.put(line)

    def next(self) -> str:
        return self.lines.get(timeout=WAIT_S)


def running_attempt(url: str) -> tuple[Store, int, int]:
    """A sweep `s` held by a live coordinator, its job 0 with attempt 1 ended and attempt 2
    running; the store, the job's id and the running attempt's."""
    store = Store(url)
    sid = store.upsert_sweep("s", "name: s", None)
    store.add_jobs(sid, [_job("a")])
    (job,) = store.pending_jobs(sid, ["a"])
    store.acquire(sid, f"here:{os.getpid()}", stale_after=STALE_AFTER,
                  owner_alive=lambda _o: True)
    first = store.start_attempt(job.id, "h", "0")
    store.append_logs([(first, "first attempt\n", 0)])
    store.finish_attempt(first, "failed", job_state="pending", error="x", error_kind="crash")
    return store, job.id, store.start_attempt(job.id, "h", "0")


def test_prints_an_attempts_log_collapsed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    store, job, at = running_attempt(url)
    store.append_logs([(at, "loading\n\r 10%|#\r100%|##########|\n[bold]not markup[/]\n", 0),
                       (at, "half a li", 0)])
    assert ran(url, str(job)) == (0, "loading\n100%|##########|\n[bold]not markup[/]\n"
                                     "half a li\n", "")
    assert ran(url, "s", "0") == ran(url, str(job))  # by its sweep and ordinal
    assert ran(url, str(job), "--attempt", "1") == (0, "first attempt\n", "")
    # Without --follow the exit code is the command's, not the attempt's.
    code, _, err = ran(url, str(job), "--attempt", "3")
    assert (code, err) == (2, f"error: job {job} has no attempt 3 (attempts: 1, 2)\n")


@pytest.mark.parametrize(("args", "message"), [
    (("999",), "error: no job 999 in this database"),
    (("s", "7"), "error: sweep 's' has no job 7"),
    (("nope",), "error: JOB is a job id (as `orchestrate status` shows it), not 'nope'; or "
                "give a sweep's name and the job's ordinal"),
])
def test_a_job_that_is_not_there_is_one_line(tmp_path: Path, args, message) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    running_attempt(url)
    code, out, err = ran(url, *args)
    assert (code, out, err.strip()) == (2, "", message)


def test_reads_only_and_never_makes_a_database(tmp_path: Path) -> None:
    code, _, err = ran(f"sqlite:///{tmp_path / 'none.db'}", "1")
    assert code == 1 and "no database at" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "none.db").exists()


# The coordinator's side, as another process: append what its stdin says, a line at a time
# (`text` or `end OUTCOME`), each an append or the attempt's end.
WRITER = textwrap.dedent("""\
    import json, sys
    from db.store import Store
    store = Store(sys.argv[1])
    at = int(sys.argv[2])
    for line in sys.stdin:
        what = json.loads(line)
        if what.get("end"):
            store.finish_attempt(at, what["end"], job_state="failed")
            break
        store.append_logs([(at, what["text"], 0)])
        print("ok", flush=True)
    """)


def writer(url: str, attempt: int) -> tuple[subprocess.Popen, Reader]:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, url, str(attempt)], cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    return proc, Reader(proc)


def tell(proc: subprocess.Popen, reader: Reader | None, **what) -> None:
    import json

    proc.stdin.write(json.dumps(what) + "\n")
    proc.stdin.flush()
    if reader is not None:
        assert reader.next() == "ok\n"


def test_follow_prints_output_as_it_comes_until_the_attempt_ends(db_url) -> None:
    # An ending each database: the exit code does not depend on it.
    ends = "timeout" if db_url.startswith("postgresql") else "succeeded"
    store, job, at = running_attempt(db_url)
    store.append_logs([(at, "before\n", 0)])
    follower = orchestrate(db_url, str(job), "--follow")
    shown = Reader(follower)
    w, written = writer(db_url, at)
    try:
        assert shown.next() == "before\n"
        tell(w, written, text="step 1\n")
        assert shown.next() == "step 1\n"  # while the attempt runs
        # A progress bar: shown once its line is whole, as its last frame.
        tell(w, written, text="\r 50%|#   ")
        tell(w, written, text="\r100%|####|\ntail without newline")
        assert shown.next() == "100%|####|\n"
        assert follower.poll() is None
        tell(w, None, end=ends)
        assert w.wait(WAIT_S) == 0
        assert follower.wait(WAIT_S) == (0 if ends == "succeeded" else 1)
        assert shown.next() == "tail without newline\n"
        err = follower.stderr.read()
        assert err == ("" if ends == "succeeded" else f"attempt 2 of job {job}: timeout\n")
    finally:
        for p in (follower, w):
            p.kill()
            p.wait()


def test_follow_ends_130_on_ctrl_c(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    store, job, at = running_attempt(url)
    store.append_logs([(at, "running\n", 0)])
    follower = orchestrate(url, str(job), "--follow")
    try:
        assert Reader(follower).next() == "running\n"
        follower.send_signal(signal.SIGINT)
        assert follower.wait(WAIT_S) == 130
    finally:
        follower.kill()
        follower.wait()



def test_ctrl_c_is_never_lost_where_it_lands(tmp_path: Path, monkeypatch) -> None:
    """Ctrl-C landing inside code that swallows what it raises (a finaliser, a library's
    cleanup: what CI hit once, the follower then ran on until the attempt read lost) still
    stops the follower with 130."""
    from db.read import logs as logs_read

    url = f"sqlite:///{tmp_path / 'l.db'}"
    _store, job, _at = running_attempt(url)
    looks = iter(range(100))

    def outcome(_store, _attempt_id: int) -> str:
        if next(looks) == 0:
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)  # the handler runs here
            except BaseException:  # what code that swallows it does
                pass
        return "running" if next(looks) < 10 else "failed"

    monkeypatch.setattr(logs_read, "attempt_outcome", outcome)
    code, _out, err = ran(url, str(job), "--follow")
    assert code == 130, err
