"""What vLLM tells only its log: the start-up split and whether the compile cache was hit.

vLLM's V1 engine loads, compiles and captures in an engine-core subprocess, which logs to
the stdout it inherits. `LogCapture` points fds 1 and 2 at a pipe while the engine starts;
a thread copies everything on to the original stderr (so the job's log keeps every line)
and keeps the first MiBs to read. The subprocess keeps the pipe after the start, so the
thread forwards its lines until it exits. No vllm or torch import here.

The patterns are vLLM 0.26.0's messages (vllm/v1/engine/core.py, compilation/monitor.py,
compilation/backends.py, v1/worker/gpu_model_runner.py). A message not found leaves its
figure out; the start time then stays in load_s, never lost.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import time

INIT = re.compile(r"init engine \(profile, create kv cache, warmup model\) took ([\d.]+) s"
                  r"(?: \(compilation: ([\d.]+) s)?")
COMPILE = re.compile(r"torch\.compile took ([\d.]+) s in total")
CAPTURE = re.compile(r"Graph capturing finished in ([\d.]+) secs")
CACHE_LOADED = re.compile(r"Directly load (?:the compiled graph|AOT compilation)")
CACHE_MISSED = re.compile(r"Compiling a graph for|Cache the graph of|saved AOT compiled")
KV_TOKENS = re.compile(r"GPU KV cache size: ([\d,]+) tokens")


class LogCapture:
    """Copies this process's and its children's fds 1 and 2 while inside the `with`."""

    def __init__(self, keep_bytes: int = 4 << 20):
        self.keep_bytes = keep_bytes
        self._kept = bytearray()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LogCapture:
        sys.stdout.flush()
        sys.stderr.flush()
        read_end, write_end = os.pipe()
        self._saved = (os.dup(1), os.dup(2))
        os.dup2(write_end, 1)
        os.dup2(write_end, 2)
        os.close(write_end)
        self._thread = threading.Thread(target=self._pump, args=(read_end,), daemon=True,
                                        name="vllm-log")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)

    def _pump(self, read_end: int) -> None:
        out = self._saved[1]
        try:
            while chunk := os.read(read_end, 65536):
                with self._lock:
                    room = self.keep_bytes - len(self._kept)
                    if room > 0:
                        self._kept += chunk[:room]
                with contextlib.suppress(OSError):  # never stop reading: writers would block
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(out, view):]
        finally:
            for fd in (read_end, *self._saved):
                with contextlib.suppress(OSError):
                    os.close(fd)

    def text(self) -> str:
        with self._lock:
            return self._kept.decode(errors="replace")

    def wait_for(self, pattern: re.Pattern, timeout_s: float) -> str:
        """The text so far, once it matches pattern or timeout_s has passed."""
        deadline = time.monotonic() + timeout_s
        while not pattern.search(text := self.text()) and time.monotonic() < deadline:
            time.sleep(0.02)
        return text

    def join(self, timeout_s: float) -> None:
        """Wait for every writer (the engine subprocess) to close the pipe."""
        if self._thread is not None:
            self._thread.join(timeout_s)


def _last(pattern: re.Pattern, text: str, group: int = 1) -> float | None:
    found = [m.group(group) for m in pattern.finditer(text) if m.group(group)]
    return float(found[-1].replace(",", "")) if found else None


def start_split(total_s: float, text: str) -> dict[str, float]:
    """Split the wall time of the engine's construction into load / profile / compile /
    capture. "init engine" covers profiling (which compiles), KV-cache allocation and the
    warm-up (which captures graphs); load is everything before it (process start, imports,
    weights). Figures missing from the log stay in load_s."""
    init = _last(INIT, text)
    compile_s = _last(INIT, text, 2) or _last(COMPILE, text) or 0.0
    capture_s = _last(CAPTURE, text) or 0.0
    if init is None:
        return {"load_s": max(0.0, total_s - compile_s - capture_s), "profile_s": 0.0,
                "compile_s": compile_s, "capture_s": capture_s}
    profile_s = max(0.0, init - compile_s - capture_s)
    return {"load_s": max(0.0, total_s - init), "profile_s": profile_s,
            "compile_s": compile_s, "capture_s": capture_s}


def compile_cache_hit(text: str) -> bool | None:
    """True where the compiled graphs came from the cache, False where they were compiled
    now, None where the log says neither (enforce_eager, or the messages changed)."""
    if CACHE_MISSED.search(text):
        return False
    if CACHE_LOADED.search(text):
        return True
    return None


def kv_cache_tokens(text: str) -> int | None:
    value = _last(KV_TOKENS, text)
    return None if value is None else int(value)
