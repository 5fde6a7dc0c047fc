"""A job process's log read as it grows: only what is new each time, a character split
between two reads whole in the second, what is beyond the most one read takes skipped and
counted, and the log cut into its jobs' chunks at their start lines however the reads fall."""

from pathlib import Path

import pytest

from engine.job import job_start_line
from orchestrator.executors.base import LogChunk
from orchestrator.executors.log_reader import LogReader


def append(log: Path, data: bytes | str) -> None:
    with log.open("ab") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def test_each_read_takes_what_is_new(tmp_path: Path) -> None:
    log = tmp_path / "log"
    reader = LogReader(log, 1)
    assert list(reader.chunks()) == []  # no file yet
    log.write_bytes(b"caf\xc3")  # caught inside the two bytes of an \u00e9
    assert list(reader.chunks()) == [LogChunk(0, "caf")]
    assert list(reader.chunks()) == []  # nothing new
    append(log, b"\xa9\n")
    assert list(reader.chunks()) == [LogChunk(0, "\u00e9\n")]


def test_a_read_takes_at_most_its_bound_and_says_what_it_skipped(tmp_path: Path) -> None:
    log = tmp_path / "log"
    reader = LogReader(log, 1, max_bytes=4)
    log.write_bytes(b"0123456789")
    assert list(reader.chunks()) == [LogChunk(0, "6789", skipped=6)]
    append(log, "ab")
    assert list(reader.chunks()) == [LogChunk(0, "ab")]


START = [job_start_line(i, 3, f"repeat {i}") + "\n" for i in range(3)]


@pytest.mark.parametrize("cut", range(0, 130, 7))
def test_each_job_gets_its_own_output_however_the_reads_fall(tmp_path: Path, cut: int) -> None:
    """The engine's start and the first job's output, its result line, the second job's
    start line and output, read in two reads cut anywhere (inside a start line too): each
    job's chunks hold exactly its own text."""
    log = tmp_path / "log"
    text = ("loading\n" + START[0] + "first\n" + '{"output_tok_s": 1}\n'
            + START[1] + "second\n" + '{"output_tok_s": 2}\n' + START[2] + "third")
    reader = LogReader(log, 3)
    got = []
    for part in (text[:cut], text[cut:]):
        append(log, part)
        got += reader.chunks()
    got += reader.chunks(final=True)
    by_job = ["".join(c.text for c in got if c.job == j) for j in range(3)]
    assert by_job == ["loading\n" + START[0] + "first\n" + '{"output_tok_s": 1}\n',
                      START[1] + "second\n" + '{"output_tok_s": 2}\n', START[2] + "third"]


def test_a_line_that_only_looks_like_a_start_line_is_output(tmp_path: Path) -> None:
    log = tmp_path / "log"
    reader = LogReader(log, 2)
    # Another process's numbering, and a partial line that can no longer be a start line.
    append(log, job_start_line(5, 9, "x") + "\n[benchsweep] jo")
    assert [c.job for c in reader.chunks()] == [0]
    append(log, "b done\n" + START[1][:-1])
    chunks = list(reader.chunks()) + list(reader.chunks(final=True))
    assert [(c.job, c.text) for c in chunks] == [(0, "[benchsweep] job done\n"),
                                                 (1, job_start_line(1, 3, "repeat 1"))]
