"""End-to-end: the real `orchestrate` command, real Ray, real job processes, real
databases, a tiny random-weight model on the CPU."""

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def cache_dir(tiny_cache):
    return tiny_cache


def sweep_file(tmp_path: Path, name: str = "e2e", *, repeats: int = 1, extra: str = "",
               variants: str = "", matrix: str = "max_num_seqs: [2, 4]") -> Path:
    body = textwrap.dedent(f"""\
        name: {name}
        model: {{arch: tiny}}
        workload: {{num_seqs: 4, input_len: [8, 24], output_len: [2, 6]}}
        variants:
          nano: {{kind: nano}}
        {variants}
        matrix: {{{matrix}}}
        repeats: {repeats}
        timeout_s: 120
        """) + extra
    path = tmp_path / f"{name}.yaml"
    path.write_text(body)
    return path


def orchestrate_env(cache_dir: Path, db: str) -> dict:
    return dict(os.environ, BENCHSWEEP_CACHE=str(cache_dir), BENCHSWEEP_DB=db,
                RAY_USAGE_STATS_ENABLED="0", COLUMNS="200", PYTHONUNBUFFERED="1")


def orchestrate(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def start(env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "orchestrator.cli", *args], env=env,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def query(db: str, sql: str) -> list[tuple]:
    engine = create_engine(db)
    try:
        with engine.connect() as c:
            return [tuple(r) for r in c.execute(text(sql))]
    finally:
        engine.dispose()


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:  # noqa: BLE001 - the database may not exist yet
            pass
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def bench_processes(env: dict) -> list[int]:
    """The job processes of the coordinator started with `env`: `engine.bench --job`
    processes whose environment carries this test's database URL. Never another run's
    jobs (a second checkout's suite, a real sweep) on the same machine."""
    mine = f"BENCHSWEEP_DB={env['BENCHSWEEP_DB']}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if b"engine.bench\0--job" not in (proc / "cmdline").read_bytes():
                continue
            if mine in (proc / "environ").read_bytes().split(b"\0"):
                pids.append(int(proc.name))
        except OSError:  # gone, or not ours to read
            continue
    return pids


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
