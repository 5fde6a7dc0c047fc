"""Run one benchmark job as a fresh process (`run_job_process`): its own process group, a
hard timeout that kills the whole group, the log tail kept, the end told as an Outcome
(base.py). Executors call this wherever the GPU is, in place or as
`python -m orchestrator.executors.process` on a worker host."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from engine import gpu_hygiene
from engine.result import BenchResult
from orchestrator.executors.base import Outcome

LOG_TAIL_BYTES = 8192
KILL_GRACE_S = 5.0


def _die_with_parent() -> None:
    # If the process that started the job dies (a Ray worker killed, the coordinator
    # SIGKILLed), the job dies too instead of holding the GPU as an orphan.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


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


def run_job_process(job_json: str, *, gpu: str, cuda_visible_devices: str, timeout_s: float,
                    threads: int | None = None, python: str = sys.executable,
                    idle_wait_s: float | None = None) -> Outcome:
    """Run `python -m engine.bench` for one job; never raises for a job's own failure.

    GPU hygiene around it (engine.gpu_hygiene): the job starts only on an idle GPU
    (waiting up to idle_wait_s, by default gpu_hygiene's, which counts against timeout_s,
    else it fails as gpu_busy), and after it the worker waits a while for the GPU to be
    idle again; if it is not, the log tail says so."""
    host = socket.gethostname()
    before = gpu_hygiene.before_job(cuda_visible_devices, timeout_s, idle_wait_s)
    if not before.ok:
        return Outcome("failed", host, gpu, error=f"GPU busy: {before.message}",
                       error_kind="gpu_busy", elapsed_s=before.waited_s)
    notes = []
    if before.waited:
        notes.append(f"waited {before.waited_s:.1f} s for the GPU to become idle")
    outcome = _run(job_json, host, gpu, cuda_visible_devices, timeout_s - before.waited_s,
                   threads, python)
    after = gpu_hygiene.after_job(cuda_visible_devices)
    if not after.ok:
        notes.append(f"warning: the GPU is not idle after the job: {after.message}")
    if notes:
        outcome.log_tail += "".join(f"\n[benchsweep worker] {n}" for n in notes)
    return outcome


def _run(job_json: str, host: str, gpu: str, cuda_visible_devices: str, timeout_s: float,
         threads: int | None, python: str) -> Outcome:
    # PCI bus order, so CUDA and NVML (envinfo) mean the same GPU by the same index.
    env = dict(os.environ, CUDA_VISIBLE_DEVICES=cuda_visible_devices, PYTHONUNBUFFERED="1",
               CUDA_DEVICE_ORDER="PCI_BUS_ID")
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    with tempfile.TemporaryDirectory(prefix="benchsweep-job-") as tmp:
        job_path, out_path, log_path = (Path(tmp) / n for n in ("job.json", "out.json", "log"))
        job_path.write_text(job_json)
        started = time.monotonic()
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [python, "-m", "engine.bench", "--job", str(job_path), "--out", str(out_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True, preexec_fn=_die_with_parent,
            )
            try:
                code = proc.wait(timeout=timeout_s)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out, code = True, None
            finally:
                _kill_group(proc)  # stragglers of the job (engine subprocesses) too
                proc.wait()
        elapsed = time.monotonic() - started
        tail = _tail(log_path)
        out = Outcome("failed", host, gpu, log_tail=tail, elapsed_s=elapsed)
        if timed_out:
            out.outcome, out.error_kind = "timeout", "timeout"
            out.error = f"timed out after {timeout_s:g} s; the job's process group was killed"
            return out
        record = _read_json(out_path)
        if code == 0 and record and "error" not in record:
            try:
                out.outcome, out.result = "succeeded", BenchResult.from_dict(record)
            except TypeError as e:  # the engine side wrote something else
                out.error_kind, out.error = "crash", f"not a BenchResult: {e}"
        elif record and "error" in record:
            out.error, out.error_kind = record["error"], record.get("error_kind", "engine")
        elif code is not None and code < 0:
            out.error_kind = "crash"
            out.error = f"killed by signal {signal.Signals(-code).name}"
        else:
            out.error_kind = "crash"
            last = [ln for ln in tail.splitlines() if ln.strip()]
            out.error = f"exit code {code}: {last[-1] if last else 'no output'}"
        return out


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    """`python -m orchestrator.executors.process`: run_job_process on a worker host (SSH or a Ray
    node), Outcome JSON written to --out. Only the standard library is needed there."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m orchestrator.executors.process")
    p.add_argument("--job", required=True, type=Path, help="job JSON file")
    p.add_argument("--out", required=True, type=Path, help="where the Outcome JSON goes")
    p.add_argument("--gpu", default="cpu")
    p.add_argument("--cuda-visible-devices", default="")
    p.add_argument("--timeout", type=float, required=True)
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    out = run_job_process(a.job.read_text(), gpu=a.gpu,
                          cuda_visible_devices=a.cuda_visible_devices,
                          timeout_s=a.timeout, threads=a.threads)
    tmp = a.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(out.to_dict()))
    tmp.replace(a.out)  # the reader never sees half a file
    return 0


if __name__ == "__main__":
    sys.exit(main())
