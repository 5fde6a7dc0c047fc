"""The job process's --out file read as it grows (a line per job, engine/bench.py), and the
Outcome of every job it was given: each line's, then, for the jobs without a line, how the
process ended. Jobs of one engine start share a process, so one that ends it early leaves
the jobs after it not reached: lost, and run again (each in a process of its own)."""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine.result import BenchResult
from orchestrator.executors.base import Outcome


def load() -> float | None:
    """The host's 1-minute load average."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


@dataclass
class ResultLines:
    """The lines of --out seen so far, each with when it was first seen (monotonic) and the
    host's load then: a job's own end, within one poll of the runner's wait."""

    path: Path
    records: list[dict | None] = field(default_factory=list)  # None: not JSON
    seen_at: list[float] = field(default_factory=list)
    started: float | None = None  # when the job process started (monotonic)
    loads: list[float | None] = field(default_factory=list)
    _stamp: tuple = field(default=(), init=False, repr=False)

    def poll(self, final: bool = False) -> None:
        """Take in the lines written since the last poll. The job process replaces the file
        whole; another writer may be caught mid-line, so a line counts once it ends, or
        (final) once the process has."""
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            if stamp == self._stamp and not final:
                return
            text = self.path.read_text(errors="replace")
        except OSError:
            return
        self._stamp = stamp
        lines = text.split("\n")
        if not final or not lines[-1].strip():
            lines = lines[:-1]
        now, at = time.monotonic(), load()
        for line in lines[len(self.records):]:
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            self.records.append(record if isinstance(record, dict) else None)
            self.seen_at.append(now)
            self.loads.append(at)


@dataclass(frozen=True)
class ProcessEnd:
    """How the job process ended."""

    code: int | None  # None: killed at its timeout
    timeout_s: float
    started: float  # monotonic
    ended: float


def outcomes(n: int, lines: ResultLines, end: ProcessEnd, host: str, gpu: str,
             tail: str) -> list[Outcome]:
    """One Outcome per job, in order. elapsed_s is a job's share of the process's time: from
    the previous job's line (the first: from the process's start) to its own; the last job
    that ran takes it to the process's end (the engine's teardown)."""
    outs: list[Outcome] = []
    last = end.started
    for record, seen in zip(lines.records[:n], lines.seen_at, strict=False):
        outs.append(_of_line(record, host, gpu, tail, seen - last))
        last = seen
    # After a failed job the process stops by itself, on purpose (exit 1): the jobs after
    # it are not reached. Otherwise the first job without a line is the one the end of the
    # process cut short.
    stopped = bool(outs) and outs[-1].outcome == "failed" and end.code == 1
    if len(outs) < n and not stopped:
        outs.append(_of_end(end, host, gpu, tail, 0.0))
    outs[-1].elapsed_s = end.ended - (lines.seen_at[len(outs) - 2] if len(outs) > 1
                                      else end.started)
    cut = len(outs)
    while len(outs) < n:
        outs.append(Outcome("lost", host, gpu, error_kind="lost", log_tail=tail,
                            error=f"not reached: the engine process it shared ended at job "
                                  f"{cut} of {n} ({outs[cut - 1].error_kind})"))
    return outs


def _of_line(record: dict | None, host: str, gpu: str, tail: str, elapsed: float) -> Outcome:
    out = Outcome("failed", host, gpu, log_tail=tail, elapsed_s=elapsed)
    if record is None:
        out.error_kind, out.error = "crash", "a result line that is not a JSON object"
    elif "error" in record:
        out.error, out.error_kind = record["error"], record.get("error_kind", "engine")
    else:
        try:
            out.outcome, out.result = "succeeded", BenchResult.from_dict(record)
        except TypeError as e:  # the engine side wrote something else
            out.error_kind, out.error = "crash", f"not a BenchResult: {e}"
    return out


def _of_end(end: ProcessEnd, host: str, gpu: str, tail: str, elapsed: float) -> Outcome:
    out = Outcome("failed", host, gpu, log_tail=tail, elapsed_s=elapsed)
    if end.code is None:
        out.outcome, out.error_kind = "timeout", "timeout"
        out.error = f"timed out after {end.timeout_s:g} s; the job's process group was killed"
    elif end.code < 0:
        out.error_kind = "crash"
        out.error = f"killed by signal {signal.Signals(-end.code).name}"
    else:
        out.error_kind = "crash"
        last = [ln for ln in tail.splitlines() if ln.strip()]
        out.error = f"exit code {end.code}: {last[-1] if last else 'no output'}"
    return out
