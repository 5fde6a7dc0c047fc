"""A job process's log read as it grows: each read takes the bytes written since the last
one, at most READ_MAX_BYTES (the newest; what it skips is counted), decoded as UTF-8 across
reads (a character split between two reads comes whole in the second), and cut into its jobs'
chunks where each job's start line is (engine/job.py): a job's chunk runs from its start line
to the next one's, the first job's from the process's start. The log says where a job ends,
however the reads fall (unless a read skips a start line: a job writing over READ_MAX_BYTES
between two reads); a line still being written that may be a start line waits for the
next read."""

from __future__ import annotations

import codecs
import os
from collections.abc import Iterator
from pathlib import Path

from engine.job import JOB_START_RE, may_start_a_job
from orchestrator.executors.base import READ_MAX_BYTES, LogChunk


class LogReader:
    def __init__(self, path: Path, jobs: int, max_bytes: int = READ_MAX_BYTES):
        self.path, self.jobs, self.max_bytes = path, jobs, max_bytes
        self.offset = 0
        self.job = 0  # the job whose output is being written
        self._held = ""  # the start of a line that may be a job's start line
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def chunks(self, final: bool = False) -> Iterator[LogChunk]:
        """What was written since the last read, a chunk per job it belongs to (none if
        nothing was). `final`: the process has ended, nothing is held back."""
        skipped, text = self._read()
        text = (self._held if not skipped else "") + text  # a gap: the line it began is cut
        line_start = text.rfind("\n") + 1
        held = "" if final else text[line_start:]
        self._held = held if held and may_start_a_job(held) else ""
        text = text[:len(text) - len(self._held)]
        at = 0
        for start in JOB_START_RE.finditer(text):
            job = int(start.group(1)) - 1
            if not self.job < job < self.jobs:  # not a start line of this process's
                continue
            if start.start() > at or skipped:
                yield LogChunk(self.job, text[at:start.start()], skipped)
                skipped = 0
            self.job, at = job, start.start()
        if text[at:] or skipped:
            yield LogChunk(self.job, text[at:], skipped)

    def _read(self) -> tuple[int, str]:
        try:
            with self.path.open("rb") as f:
                size = f.seek(0, os.SEEK_END)
                if size <= self.offset:
                    return 0, ""
                skipped = max(0, size - self.offset - self.max_bytes)
                if skipped:
                    self._decoder.reset()  # the skip may land inside a character
                f.seek(self.offset + skipped)
                data = f.read(size - self.offset - skipped)
        except OSError:
            return 0, ""
        self.offset += skipped + len(data)
        return skipped, self._decoder.decode(data)
