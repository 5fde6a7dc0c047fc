"""A job's log file read as it grows: each read takes the bytes written since the last one,
at most READ_MAX_BYTES (the newest; what it skips is counted), decoded as UTF-8 across reads
(a character split between two reads comes whole in the second)."""

from __future__ import annotations

import codecs
import os
from collections.abc import Iterator
from pathlib import Path

from orchestrator.executors.base import READ_MAX_BYTES, LogChunk


class LogReader:
    def __init__(self, path: Path, max_bytes: int = READ_MAX_BYTES):
        self.path, self.max_bytes = path, max_bytes
        self.offset = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def chunks(self, job: int) -> Iterator[LogChunk]:
        """What was written since the last read, as the `job`-th job's chunk (none if
        nothing was)."""
        try:
            with self.path.open("rb") as f:
                size = f.seek(0, os.SEEK_END)
                if size <= self.offset:
                    return
                skipped = max(0, size - self.offset - self.max_bytes)
                if skipped:
                    self._decoder.reset()  # the skip may land inside a character
                f.seek(self.offset + skipped)
                data = f.read(size - self.offset - skipped)
        except OSError:
            return
        self.offset += skipped + len(data)
        text = self._decoder.decode(data)
        if text or skipped:
            yield LogChunk(job, text, skipped)
