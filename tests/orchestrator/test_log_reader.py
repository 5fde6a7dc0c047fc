"""A job's log read as it grows: only what is new each time, a character split between two
reads whole in the second, and what is beyond the most one read takes skipped and counted."""

from pathlib import Path

from orchestrator.executors.base import LogChunk
from orchestrator.executors.log_reader import LogReader


def test_each_read_takes_what_is_new(tmp_path: Path) -> None:
    log = tmp_path / "log"
    reader = LogReader(log)
    assert list(reader.chunks(0)) == []  # no file yet
    log.write_bytes(b"caf\xc3")  # caught inside the two bytes of an \u00e9
    assert list(reader.chunks(0)) == [LogChunk(0, "caf")]
    assert list(reader.chunks(0)) == []  # nothing new
    with log.open("ab") as f:
        f.write(b"\xa9\n")
    assert list(reader.chunks(1)) == [LogChunk(1, "caf\u00e9\n"[3:])]


def test_a_read_takes_at_most_its_bound_and_says_what_it_skipped(tmp_path: Path) -> None:
    log = tmp_path / "log"
    reader = LogReader(log, max_bytes=4)
    log.write_bytes(b"0123456789")
    assert list(reader.chunks(0)) == [LogChunk(0, "6789", skipped=6)]
    with log.open("ab") as f:
        f.write(b"ab")
    assert list(reader.chunks(0)) == [LogChunk(0, "ab")]
