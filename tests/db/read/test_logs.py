"""db.read.logs: progress-bar frames collapsed; an attempt's log as the store kept it, what
came after a position, and its outcome for a follower; on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from db.models import Sweep, utcnow
from db.read.logs import (
    attempt_log,
    attempt_numbers,
    attempt_outcome,
    collapse_frames,
    dropped_note,
    log_after,
)
from db.read.sweeps import LOST_ATTEMPT
from db.store import STALE_AFTER, Store
from tests.db.test_store import _job


@pytest.mark.parametrize(("raw", "shown"), [
    ("plain\nlines\n", "plain\nlines\n"),
    # tqdm: frames redrawn with \r, the last one left when the bar closes with \n.
    ("load\n\r  0%|     | 0/3\r 33%|#    | 1/3\r100%|#####| 3/3\ndone\n",
     "load\n100%|#####| 3/3\ndone\n"),
    ("a bar\r 50%\r", " 50%"),  # a frame that ends in \r is still the last one
    ("windows\r\nline\r\n", "windows\nline\n"),  # CRLF is a line end, not a frame
    ("\r\r\n", "\n"),
    ("no newline at the end\rframe", "frame"),
    ("", ""),
])
def test_collapse_frames_keeps_the_last_frame_of_each_line(raw: str, shown: str) -> None:
    assert collapse_frames(raw) == shown


def test_collapse_frames_of_the_whole_equals_line_by_line() -> None:
    raw = "x\ry\nz\r\n\rp\rq\n"
    assert collapse_frames(raw) == "".join(collapse_frames(ln + "\n")[:-1] + "\n"
                                           for ln in raw.split("\n")[:-1])


def _attempt(store: Store, *, owner: str = "h:1") -> tuple[int, int]:
    sid = store.upsert_sweep("s", "name: s", None)
    store.add_jobs(sid, [_job("a")])
    (job,) = store.pending_jobs(sid, ["a"])
    store.acquire(sid, owner, stale_after=STALE_AFTER, owner_alive=lambda _o: True)
    return job.id, store.start_attempt(job.id, "h", "0")


def test_a_running_attempts_log_and_what_follows(db_url) -> None:
    store = Store(db_url)
    job, at = _attempt(store)
    assert attempt_numbers(store, job) == [1] and attempt_numbers(store, job + 99) is None
    assert attempt_log(store, job, 2) is None and attempt_log(store, job + 99) is None
    log = attempt_log(store, job)
    assert (log.number, log.outcome, log.text, log.end, log.streamed) == (1, "running", "", 0,
                                                                          False)
    store.append_logs([(at, "first\n", 0), (at, "sec", 0)])
    log = attempt_log(store, job)
    assert (log.text, log.end, log.streamed) == ("first\nsec", 9, True)
    store.append_logs([(at, "ond\n", 0)])
    assert log_after(store, at, log.end) == ("ond\n", 13)
    assert log_after(store, at, 13) == ("", 13)
    store.append_logs([(at, "after a skip\n", 5)])  # the worker skipped 5 bytes
    assert log_after(store, at, 13) == (dropped_note(5) + "after a skip\n", 31)
    store.finish_attempt(at, "succeeded", job_state="succeeded", log_tail="tail")
    assert attempt_outcome(store, at) == "succeeded"
    assert attempt_log(store, job).text.startswith("first\nsecond\n")  # the chunks, not the tail


def test_an_attempt_without_chunks_shows_its_tail(db_url) -> None:
    store = Store(db_url)
    job, at = _attempt(store)
    store.finish_attempt(at, "failed", job_state="failed", error="x", log_tail="the tail\n")
    log = attempt_log(store, job, 1)
    assert (log.text, log.streamed, log.outcome) == ("the tail\n", False, "failed")


def test_an_attempt_of_a_lost_coordinator_is_unknown(db_url) -> None:
    store = Store(db_url)
    job, at = _attempt(store)
    with store.session() as s:
        s.execute(update(Sweep).values(heartbeat_at=utcnow() - 2 * STALE_AFTER))
    assert attempt_outcome(store, at) == LOST_ATTEMPT == attempt_log(store, job).outcome
