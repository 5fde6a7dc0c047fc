"""Run a benchmark job process (`run_job_process`): one job, or the jobs of one
configuration that share an engine start (a sweep's `reuse: repeats`), in a fresh process
with its own process group, a hard timeout that kills the whole group, the log tail kept,
the end of each job told as an Outcome (base.py; job_lines.py reads the process's result
lines). Executors call this wherever the GPU is, in place or as
`python -m orchestrator.executors.process` on a worker host.

While the job runs, its log is read every LOG_EVERY_S and handed on as LogChunks:
`job_process` yields them and returns the Outcomes (what a Ray executor streams back),
`run_job_process` hands them to a callback (what the SSH runner appends to a file the
coordinator reads by offset).

The job runs at the priority the coordinator asks for (`nice`: the coordinator's own nice
value, which every executor carries to its runner), set explicitly in the child: a Ray
worker runs at nice 15 and its children would inherit that. Around the job the runner
records what could have disturbed its figures (BenchResult.conditions): the host's load
average when the job started and ended, the compute processes on its GPU before and after
the process, and the CPU time the process and the children it reaped used over its life.
Beside the job its GPU is sampled (engine.gpu_telemetry) from the process's start to its
end; each job's Outcome carries its share of the samples, a failed or timed-out job's too."""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

from engine import gpu_hygiene, gpu_telemetry
from engine.gpu_telemetry import Telemetry
from engine.result import Conditions
from orchestrator.executors.base import LOG_EVERY_S, JobRun, LogChunk, Outcome
from orchestrator.executors.job_lines import ProcessEnd, ResultLines, load, outcomes
from orchestrator.executors.log_reader import LogReader

LOG_TAIL_BYTES = 8192
KILL_GRACE_S = 5.0


def _die_with_parent() -> None:
    # If the process that started the job dies (a Ray worker killed, the coordinator
    # SIGKILLed), the job dies too instead of holding the GPU as an orphan.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _start_child(nice: int):
    """What the job's process does before it execs: die with its parent, take the priority
    asked for. Lowering a nice value may be refused (no CAP_SYS_NICE): the job then runs at
    what it inherited, and its record (nice against nice_asked) marks it disturbed."""
    def start() -> None:
        _die_with_parent()
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, nice)
    return start


def own_nice() -> int:
    """The calling process's nice value: what a coordinator hands its executors."""
    return os.getpriority(os.PRIO_PROCESS, 0)


def _wait(proc: subprocess.Popen, timeout_s: float, poll: Callable[[], Iterator[LogChunk]]
          ) -> Generator[LogChunk, None, tuple[int | None, float | None]]:
    """Popen.wait with a timeout, through wait4: yields what poll() yields between two
    looks; returns the exit code (None: timed out) and the CPU seconds the job and every
    child it reaped used."""
    deadline = time.monotonic() + timeout_s
    delay = 0.001
    while True:
        yield from poll()
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage.ru_utime + usage.ru_stime
        left = deadline - time.monotonic()
        if left <= 0:
            return None, None
        time.sleep(min(delay, left))
        delay = min(delay * 2, 0.05)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the job's process group, SIGKILL what is left after a grace period."""
    pgid = proc.pid
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + KILL_GRACE_S
        while time.monotonic() < deadline:
            proc.poll()  # reap the leader, or its zombie keeps the group alive
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


def _tail(path: Path) -> str:
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - LOG_TAIL_BYTES))
        return f.read().decode(errors="replace")


def run_job_process(jobs: list[str], *, on_log: Callable[[LogChunk], None] | None = None,
                    **kw) -> list[Outcome]:
    """job_process, its log handed to on_log as it comes; the Outcomes."""
    run = job_process(jobs, **kw)
    while True:
        try:
            chunk = next(run)
        except StopIteration as end:
            return end.value
        if on_log is not None:
            on_log(chunk)


def job_process(jobs: list[str], *, gpu: str, cuda_visible_devices: str, timeout_s: float,
                threads: int | None = None, python: str = sys.executable,
                idle_wait_s: float | None = None, nice: int | None = None,
                gpu_read: gpu_telemetry.Read | None = None) -> JobRun:
    """Run `python -m engine.bench` for `jobs` (job JSONs: one, or one configuration's that
    share an engine start) at nice value `nice` (None: this process's own), with timeout_s
    for them all; yields its log in chunks while it runs, returns an Outcome per job, in
    order. Never raises for a job's own failure.

    GPU hygiene around it (engine.gpu_hygiene): the process starts only on an idle GPU
    (waiting up to idle_wait_s, by default gpu_hygiene's, which counts against timeout_s,
    else every job fails as gpu_busy), and after it the worker waits a while for the GPU to
    be idle again; if it is not, the log tail says so. A result's conditions are filled in
    around the job (module docstring). The GPU is sampled through `gpu_read` where given
    (tests), else NVML."""
    host = socket.gethostname()
    before = gpu_hygiene.before_job(cuda_visible_devices, timeout_s, idle_wait_s)
    if not before.ok:
        return [Outcome("failed", host, gpu, error=f"GPU busy: {before.message}",
                        error_kind="gpu_busy", elapsed_s=before.waited_s) for _ in jobs]
    notes = []
    if before.waited:
        notes.append(f"waited {before.waited_s:.1f} s for the GPU to become idle")
    seen = Conditions(nice_asked=own_nice() if nice is None else nice,
                      cpu_count=os.cpu_count(), load_before=load(),
                      gpu_processes_before=gpu_hygiene.processes(cuda_visible_devices),
                      gpu_wait_before_s=round(before.waited_s, 3))
    outcomes, lines = yield from _run(jobs, host, gpu, cuda_visible_devices,
                                      timeout_s - before.waited_s, threads, python, seen,
                                      gpu_read)
    seen.load_after = load()
    after = gpu_hygiene.after_job(cuda_visible_devices)
    seen.gpu_processes_after = gpu_hygiene.processes(cuda_visible_devices)
    seen.gpu_wait_after_s = round(after.waited_s, 3)
    if not after.ok:
        notes.append(f"warning: the GPU is not idle after the job: {after.message}")
    # What each job read of itself, with what the runner saw: the load as the job started
    # (the previous job's end) and ended, the rest over the whole process.
    loads = [seen.load_before, *lines.loads]
    for i, out in enumerate(outcomes):
        if out.result is not None:
            own = out.result.conditions
            out.result.conditions = dataclasses.replace(
                seen, nice=own.nice, cpu_affinity=own.cpu_affinity, load_before=loads[i],
                load_after=loads[i + 1], result_at_s=round(lines.seen_at[i] - lines.started, 3))
        if notes:
            told = "".join(f"\n[benchsweep worker] {n}" for n in notes)
            out.log_tail += told
            yield LogChunk(i, told + "\n")
    return outcomes


def _run(jobs: list[str], host: str, gpu: str, cuda_visible_devices: str, timeout_s: float,
         threads: int | None, python: str, seen: Conditions, gpu_read: gpu_telemetry.Read | None
         ) -> Generator[LogChunk, None, tuple[list[Outcome], ResultLines]]:
    # PCI bus order, so CUDA and NVML (envinfo) mean the same GPU by the same index.
    env = dict(os.environ, CUDA_VISIBLE_DEVICES=cuda_visible_devices, PYTHONUNBUFFERED="1",
               CUDA_DEVICE_ORDER="PCI_BUS_ID")
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    with tempfile.TemporaryDirectory(prefix="benchsweep-job-") as tmp:
        job_path, out_path, log_path = (Path(tmp) / n for n in ("job.json", "out.json", "log"))
        job_path.write_text("[" + ", ".join(jobs) + "]")
        lines = ResultLines(out_path)
        log_reader = LogReader(log_path, len(jobs))
        read_at = [time.monotonic()]

        def read(final: bool = False) -> Iterator[LogChunk]:
            if final or time.monotonic() - read_at[0] >= LOG_EVERY_S:
                read_at[0] = time.monotonic()
                yield from log_reader.chunks(final)
            lines.poll(final)

        with gpu_telemetry.sampling(cuda_visible_devices, gpu_read) as sampler, \
                log_path.open("wb") as log:
            started = lines.started = time.monotonic()
            proc = subprocess.Popen(
                [python, "-m", "engine.bench", "--job", str(job_path), "--out", str(out_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True, preexec_fn=_start_child(seen.nice_asked),
            )
            if sampler is not None:
                sampler.start(started, session=proc.pid)
            try:
                code, seen.cpu_s = yield from _wait(proc, timeout_s, read)
                seen.wall_s = time.monotonic() - started
            finally:
                _kill_group(proc)  # stragglers of the job (engine subprocesses) too
                proc.wait()
                tel = sampler.stop() if sampler is not None else None
        yield from read(final=True)
        end = ProcessEnd(code, timeout_s, started, time.monotonic())
        outs = outcomes(len(jobs), lines, end, host, gpu, _tail(log_path))
        if tel is not None:
            _share_telemetry(outs, tel, [t - started for t in lines.seen_at])
        return outs, lines


def _share_telemetry(outs: list[Outcome], tel: Telemetry, lines_s: list[float]) -> None:
    """Each job that ran its share of the process's samples, as its elapsed_s shares the
    process's time (job_lines.outcomes): from the previous job's result line (the first:
    from the process's start) to its own; the last job that ran to the process's end.
    lines_s: when each result line came, in seconds since the process started."""
    ran = max((i for i, o in enumerate(outs) if o.elapsed_s > 0), default=0)
    for i, out in enumerate(outs[:ran + 1]):
        start = lines_s[i - 1] if i else 0.0
        end = lines_s[i] if i < ran else float("inf")
        out.telemetry = tel.window(start, end, lines_s[i] if i < len(lines_s) else None)


def main(argv: list[str] | None = None) -> int:
    """`python -m orchestrator.executors.process`: run_job_process on a worker host (SSH or a Ray
    node), the Outcomes written to --out as a JSON list. Only the standard library is needed
    there."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m orchestrator.executors.process")
    p.add_argument("--job", required=True, type=Path,
                   help="job JSON file: a job, or a list of one configuration's")
    p.add_argument("--out", required=True, type=Path,
                   help="where the Outcomes go (a JSON list, one per job)")
    p.add_argument("--gpu", default="cpu")
    p.add_argument("--cuda-visible-devices", default="")
    p.add_argument("--timeout", type=float, required=True)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--nice", type=int, default=None,
                   help="the job's nice value (the coordinator's); default: this process's")
    p.add_argument("--log-out", type=Path,
                   help="where the job's log goes as it runs: a LogChunk a line (JSON, ASCII), "
                        "appended, each line written whole")
    a = p.parse_args(argv)
    jobs = json.loads(a.job.read_text())
    with contextlib.ExitStack() as stack:
        on_log = None
        if a.log_out is not None:
            log_out = stack.enter_context(a.log_out.open("a", encoding="ascii"))

            def on_log(chunk: LogChunk) -> None:
                log_out.write(json.dumps(dataclasses.asdict(chunk)) + "\n")
                log_out.flush()

        outs = run_job_process(
            [json.dumps(j) for j in (jobs if isinstance(jobs, list) else [jobs])], on_log=on_log,
            gpu=a.gpu, cuda_visible_devices=a.cuda_visible_devices, timeout_s=a.timeout,
            threads=a.threads, nice=a.nice)
    # The log is whole before the outcome appears: a reader that sees the outcome has
    # every chunk to read.
    tmp = a.out.with_suffix(".tmp")
    tmp.write_text(json.dumps([o.to_dict() for o in outs]))
    tmp.replace(a.out)  # the reader never sees half a file
    return 0


if __name__ == "__main__":
    sys.exit(main())
