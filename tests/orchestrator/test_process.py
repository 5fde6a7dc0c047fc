"""run_job_process with real processes: the job's whole process group is gone afterwards (a child
that ignores SIGTERM included), GPU hygiene is a no-op without NVML and refuses a busy GPU,
a written record that is no BenchResult fails the job, the worker CLI writes its Outcome,
the job runs at the nice value asked for (read from its own /proc/self/stat), and a result
carries the conditions it was taken under."""

import dataclasses
import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import gpu_hygiene
from engine.job import job_start_line
from engine.result import Conditions
from orchestrator.executors import process
from orchestrator.executors.base import LogChunk
from orchestrator.executors.job_lines import ResultLines
from orchestrator.executors.process import run_job_process
from tests.engine.test_gpu_hygiene import FakeGpu, fake_pynvml
from tests.engine.test_result import make

ROOT = Path(__file__).resolve().parents[2]
GIB = 1 << 30


@pytest.fixture(autouse=True)
def short_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same SIGTERM-then-SIGKILL path, with a grace of half a second instead of five."""
    monkeypatch.setattr(process, "KILL_GRACE_S", 0.5)


def fake_python(tmp_path: Path, body: str) -> str:
    """An executable run_job_process starts in place of `python -m engine.bench --job J --out O`:
    it leaves a child that ignores SIGTERM and records its pid, then runs `body`."""
    straggler = ("import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                 f"open({str(tmp_path / 'child.pid')!r}, 'w').write(str(os.getpid())); "
                 "time.sleep(600)")
    script = tmp_path / "python"
    script.write_text(f"#!/bin/sh\n{sys.executable} -c \"{straggler}\" &\n"
                      f"while [ ! -s {tmp_path / 'child.pid'} ]; do sleep 0.05; done\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")  # killed, waiting to be reaped by init


def test_job_group_killed_after_success(tmp_path: Path) -> None:
    result = make(output_tokens=3, elapsed_s=1.0)
    py = fake_python(tmp_path, f"echo '{result.to_json()}' > \"$6\"; echo done; exit 0")
    (out,) = run_job_process(["{}"], gpu="0", cuda_visible_devices="0", timeout_s=60, python=py)
    # No NVML on this machine: the checks pass as "not checked", the job runs.
    assert out.outcome == "succeeded", out
    assert dataclasses.replace(out.result, conditions=Conditions()) == result
    child = int((tmp_path / "child.pid").read_text())
    assert gone(child)
    # SIGTERM was ignored, so the group got SIGKILL after the grace period.
    assert out.elapsed_s >= process.KILL_GRACE_S
    assert "[benchsweep worker]" not in out.log_tail


def test_a_record_that_is_no_bench_result_fails_the_job(tmp_path: Path) -> None:
    py = fake_python(tmp_path, "echo '{\"output_tokens\": 1}' > \"$6\"")
    (out,) = run_job_process(["{}"], gpu="cpu", cuda_visible_devices="", timeout_s=60, python=py)
    assert (out.outcome, out.error_kind, out.result) == ("failed", "crash", None)
    assert out.error.startswith("not a BenchResult: ")


def test_job_group_killed_on_timeout(tmp_path: Path) -> None:
    py = fake_python(tmp_path, "trap '' TERM; sleep 600")
    t0 = time.monotonic()
    (out,) = run_job_process(["{}"], gpu="cpu", cuda_visible_devices="", timeout_s=1, python=py)
    assert out.outcome == "timeout" and out.error_kind == "timeout"
    assert gone(int((tmp_path / "child.pid").read_text()))
    assert time.monotonic() - t0 < 1 + 2 * process.KILL_GRACE_S + 3


def test_busy_gpu_fails_before_the_job_starts(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    gpus = {0: FakeGpu([(70 * GIB, [777])])}
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(gpus))
    monkeypatch.setattr(gpu_hygiene, "POLL_S", 0.01)
    py = fake_python(tmp_path, "exit 0")
    (out,) = run_job_process(["{}"], gpu="0", cuda_visible_devices="0", timeout_s=60, python=py,
                             idle_wait_s=0.1)
    assert out.outcome == "failed" and out.error_kind == "gpu_busy"
    assert out.error.startswith("GPU busy: GPU 0 (NVIDIA H200, GPU-0): 70.0 of 140.0 GiB")
    assert "pid 777" in out.error
    assert not (tmp_path / "child.pid").exists()  # the job never started


def test_waits_for_idle_and_warns_when_not_released(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # Busy for three reads, idle for the fourth (the job starts), then held by a process
    # that is not the job's (the worker cannot kill it, only report it).
    busy, idle, leak = (70 * GIB, [777]), (GIB // 2, []), (9 * GIB, [888])
    gpus = {0: FakeGpu([busy, busy, busy, idle, idle, leak])}
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(gpus))
    monkeypatch.setattr(gpu_hygiene, "POLL_S", 0.2)
    monkeypatch.setattr(gpu_hygiene, "AFTER_WAIT_S", 0.3)
    py = fake_python(tmp_path, f"echo '{make(output_tokens=1).to_json()}' > \"$6\"")
    logged: list[LogChunk] = []
    (out,) = run_job_process(["{}"], gpu="0", cuda_visible_devices="0", timeout_s=60, python=py,
                             on_log=logged.append)
    assert out.outcome == "succeeded"
    assert re.search(r"\[benchsweep worker\] waited 0\.\d s for the GPU to become idle",
                     out.log_tail)
    assert logged[-1].text.strip() == out.log_tail.strip()  # the log that streams says so too
    assert ("[benchsweep worker] warning: the GPU is not idle after the job: GPU 0 "
            "(NVIDIA H200, GPU-0): 9.0 of 140.0 GiB in use, 1 compute process(es): pid 888"
            in out.log_tail)
    # The record says so too, and marks the figure.
    cond = out.result.conditions
    assert cond.gpu_processes_before == []
    assert cond.gpu_processes_after == [{"pid": 888, "used_bytes": 9 * GIB}]
    assert "1 other GPU process(es) after (pid 888)" in out.result.disturbed
    # The runner's waits, where the attempt's time went: three busy reads before, the whole
    # wait after (the leak never left).
    assert 0.5 < cond.gpu_wait_before_s < 1.0 and cond.gpu_wait_after_s >= 0.3


def test_worker_cli_writes_the_outcome_and_its_log(tmp_path: Path) -> None:
    job = {"engine": "nope", "variant": "x", "model": {"arch": "tiny"},
           "workload": {"name": "standard"}, "max_num_seqs": 1}
    (tmp_path / "job.json").write_text(json.dumps(job))
    r = subprocess.run(
        [sys.executable, "-m", "orchestrator.executors.process", "--job",
         str(tmp_path / "job.json"), "--out", str(tmp_path / "outcome.json"), "--timeout", "60",
         "--log-out", str(tmp_path / "log.jsonl")],
        cwd=ROOT, env=dict(os.environ, BENCHSWEEP_CACHE=str(tmp_path / "cache")),
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0, r.stderr
    (out,) = json.loads((tmp_path / "outcome.json").read_text())
    assert out["outcome"] == "failed" and out["error_kind"] == "bad_input"
    assert out["error"].startswith("BadInput: unknown engine kind 'nope'")
    # The job's output, a chunk a line: here its traceback.
    chunks = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert {c["job"] for c in chunks} == {0} and not any(c["skipped"] for c in chunks)
    assert "BadInput: unknown engine kind 'nope'" in "".join(c["text"] for c in chunks)


def stat_nice(path: Path) -> int:
    """Field 19 of a /proc/PID/stat copy: the nice value."""
    return int(path.read_text().rsplit(")", 1)[1].split()[16])


@pytest.mark.parametrize("asked", [None, 4])
def test_job_runs_at_the_nice_value_asked(tmp_path: Path, asked: int | None) -> None:
    # The job's shell copies its own /proc/self/stat; None: the caller's own nice value.
    py = fake_python(tmp_path, f"cat /proc/$$/stat > {tmp_path / 'stat'}")
    run_job_process(["{}"], gpu="cpu", cuda_visible_devices="", timeout_s=60, python=py,
                    nice=asked)
    assert stat_nice(tmp_path / "stat") == (os.getpriority(os.PRIO_PROCESS, 0) if asked is None
                                            else asked)


def test_a_runner_at_nice_15_gives_its_job_the_nice_asked(tmp_path: Path) -> None:
    """As a Ray worker does: the runner itself at nice 15, the job asked for 0. Lowering a
    nice value needs CAP_SYS_NICE; without it the job keeps 15 and its record says so."""
    py = fake_python(tmp_path, f"cat /proc/$$/stat > {tmp_path / 'stat'}; "
                               f"echo '{make(output_tokens=1).to_json()}' > \"$6\"")
    code = ("import json, sys; from orchestrator.executors.process import run_job_process; "
            f"(o,) = run_job_process(['{{}}'], gpu='cpu', cuda_visible_devices='', "
            f"timeout_s=60, python={py!r}, nice=0); print(json.dumps(o.to_dict()))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=60, preexec_fn=lambda: os.nice(15))
    assert r.returncode == 0, r.stderr
    cond = json.loads(r.stdout)["result"]["conditions"]
    assert cond["nice_asked"] == 0
    if os.geteuid() == 0:
        assert stat_nice(tmp_path / "stat") == 0
    else:  # the record cannot read the fake job's own nice; the kernel kept 15
        assert stat_nice(tmp_path / "stat") == 15


def test_a_result_records_its_conditions(tmp_path: Path) -> None:
    # The job burns CPU in a child it waits for: the runner counts it (children's rusage).
    burn = f"{sys.executable} -c 'sum(range(3 * 10**7))'"
    py = fake_python(tmp_path, f"{burn}; echo '{make(output_tokens=1).to_json()}' > \"$6\"")
    (out,) = run_job_process(["{}"], gpu="cpu", cuda_visible_devices="", timeout_s=60, python=py,
                          nice=2)
    c = out.result.conditions
    assert c.nice_asked == 2 and c.cpu_count == os.cpu_count()
    assert c.load_before is not None and c.load_after is not None
    assert c.gpu_processes_before is None and c.gpu_processes_after is None  # a CPU slot
    assert c.gpu_wait_before_s == c.gpu_wait_after_s == 0.0  # nothing to wait for
    assert 0.2 < c.cpu_s <= c.wall_s * (os.cpu_count() or 1)
    busy = c.load_before > c.cpu_count or c.load_after - c.cpu_s / c.wall_s > c.cpu_count
    assert busy == any(r.startswith("load ") for r in out.result.disturbed)
    # The fake job wrote no conditions of its own: nice and affinity stay unread.
    assert c.nice is None and c.cpu_affinity is None


def fake_bench(tmp_path: Path, body: str) -> str:
    """An executable in place of `python -m engine.bench --job J --out O` ($4, $6) that runs
    `body`, with $R a result line and `put LINES` replacing O whole, as the job process
    does, so each line is seen as it comes."""
    script = tmp_path / "bench"
    script.write_text(f"#!/bin/sh\nR='{make(output_tokens=1).to_json()}'\nO=\"$6\"\n"
                      "put() { printf '%s\\n' \"$@\" > \"$O.tmp\"; mv \"$O.tmp\" \"$O\"; }\n"
                      f"{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_a_result_says_when_its_line_came_so_the_teardown_shows(tmp_path: Path) -> None:
    """The process's time after the job's result line (the engine's teardown) is wall_s less
    result_at_s."""
    py = fake_bench(tmp_path, 'sleep 0.5; put "$R"; sleep 1.5')
    (out,) = run_job_process(["{}"], gpu="cpu", cuda_visible_devices="", timeout_s=60,
                             python=py)
    c = out.result.conditions
    assert 0.4 < c.result_at_s < 1.5 and c.wall_s - c.result_at_s > 1.2


FAILED = '{"error": "RuntimeError: CUDA error: out of memory", "error_kind": "oom"}'


@pytest.mark.parametrize(("body", "timeout", "cut"), [
    # The second job fails: the job process stops by itself, the third is not reached.
    (f"sleep 0.5; put \"$R\"; sleep 0.5; put \"$R\" '{FAILED}'; exit 1", 60,
     ("failed", "oom", "RuntimeError: CUDA error: out of memory")),
    # The process dies in the second job: that one crashed, the third is not reached.
    ("sleep 0.5; put \"$R\"; sleep 0.5; kill -9 $$", 60,
     ("failed", "crash", "killed by signal SIGKILL")),
    # The second job outlasts the time of all three: it timed out.
    ("sleep 0.5; put \"$R\"; sleep 600", 2,
     ("timeout", "timeout", "timed out after 2 s; the job's process group was killed")),
])
def test_jobs_of_one_process_each_end_on_their_own(tmp_path: Path, body: str, timeout: float,
                                                   cut: tuple) -> None:
    first, second, third = run_job_process(["{}"] * 3, gpu="cpu", cuda_visible_devices="",
                                            timeout_s=timeout, python=fake_bench(tmp_path, body))
    assert first.outcome == "succeeded" and first.result.output_tokens == 1
    assert (second.outcome, second.error_kind, second.error) == cut
    assert (third.outcome, third.error_kind) == ("lost", "lost")
    assert third.error == f"not reached: the engine process it shared ended at job 2 of 3 " \
                          f"({cut[1]})"
    # Each job's share of the process's time, from the line before its own (or its end).
    assert first.elapsed_s >= 0.5 and second.elapsed_s >= 0.5 and third.elapsed_s == 0
    assert first.log_tail == second.log_tail == third.log_tail


def test_each_result_of_a_process_has_its_own_load_readings(tmp_path: Path) -> None:
    py = fake_bench(tmp_path, "put \"$R\"; sleep 0.3; put \"$R\" \"$R\"")
    outs = run_job_process(["{}"] * 2, gpu="cpu", cuda_visible_devices="", timeout_s=60,
                           python=py)
    a, b = (o.result.conditions for o in outs)
    assert a.load_before is not None and a.load_after is not None
    assert b.load_before == a.load_after and b.load_after is not None
    assert a.cpu_s == b.cpu_s and a.wall_s == b.wall_s  # the process's, over its life


def test_result_lines_count_a_line_once_it_ends(tmp_path: Path) -> None:
    out = tmp_path / "out"
    lines = ResultLines(out)
    lines.poll()  # no file yet
    out.write_text('{"a": 1}\n{"b"')  # caught mid-line
    lines.poll()
    assert lines.records == [{"a": 1}]
    out.write_text('{"a": 1}\n{"b": 2}\n[3]\n')
    lines.poll()
    assert lines.records == [{"a": 1}, {"b": 2}, None]  # not an object: unreadable
    out.write_text('{"a": 1}\n{"b": 2}\n[3]\n{"c": 3}')
    lines.poll()
    assert len(lines.records) == 3
    lines.poll(final=True)  # the writer has ended: its last line stands without a newline
    assert lines.records[3] == {"c": 3} and len(lines.seen_at) == len(lines.loads) == 4


def test_the_log_comes_in_chunks_while_the_job_runs(tmp_path: Path) -> None:
    """Read every LOG_EVERY_S, the first chunk long before the process ends; each job's
    output is its own, from its start line to the next job's, however the reads fall:
    the first job's last line written just before its result line (which the runner's
    polls see before the next read of the log) is still the first job's."""
    py = fake_bench(tmp_path, f"echo '{START[0]}'; echo first; sleep 1.5; echo last; "
                              f"put \"$R\"; sleep 1.5; echo '{START[1]}'; echo second; "
                              "sleep 1.5; put \"$R\" \"$R\"; printf 'bye'")
    got: list[tuple[float, LogChunk]] = []
    outs = run_job_process(["{}"] * 2, gpu="cpu", cuda_visible_devices="", timeout_s=60,
                           python=py, on_log=lambda c: got.append((time.monotonic(), c)))
    ended = time.monotonic()
    assert [o.outcome for o in outs] == ["succeeded"] * 2
    (first_at, first), *_ = got
    assert first == LogChunk(0, f"{START[0]}\nfirst\n") and ended - first_at > 1.0
    by_job = ["".join(c.text for _, c in got if c.job == j) for j in range(2)]
    assert by_job == [f"{START[0]}\nfirst\nlast\n", f"{START[1]}\nsecond\nbye"]


START = [job_start_line(i, 2, f"repeat {i}") for i in range(2)]


class Ticking:
    """An injected GPU reader whose n-th read says n% busy (this machine has no NVML)."""

    def __init__(self):
        self.n = 0

    def __call__(self):
        from engine.gpu_telemetry import Reading

        self.n += 1
        return Reading(gpu_pct=self.n, pids=[])


def test_each_job_of_a_process_gets_its_share_of_the_gpu_samples(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("engine.gpu_telemetry.PERIOD_S", 0.1)
    py = fake_bench(tmp_path, "sleep 1; put \"$R\"; sleep 600")
    first, second, third = run_job_process(["{}"] * 3, gpu="0", cuda_visible_devices="0",
                                           timeout_s=2.5, python=py, gpu_read=Ticking())
    assert (first.outcome, second.outcome, third.outcome) == ("succeeded", "timeout", "lost")
    a, b = first.telemetry, second.telemetry
    # The first job's share runs from the process's start to its line; the second's, which
    # timed out, from there to the process's end, its times counted from its own start.
    assert a.t[0] < 0.1 and 0.9 <= a.t[-1] < a.done_s <= first.elapsed_s + 1e-3
    assert 8 <= len(a) <= 12 and b.done_s is None and third.telemetry is None
    assert b.t[0] < 0.2 and 1.0 <= b.t[-1] <= second.elapsed_s
    assert a.gpu_pct + b.gpu_pct == list(range(1, len(a) + len(b) + 1))  # none lost, none twice
    assert set(a.others) == set(b.others) == {0}


def test_no_samples_on_a_cpu_slot(tmp_path: Path) -> None:
    read = Ticking()
    py = fake_bench(tmp_path, "sleep 0.3; put \"$R\"")
    (out,) = run_job_process(["{}"], gpu="cpu", cuda_visible_devices="", timeout_s=60,
                             python=py, gpu_read=read)
    assert out.outcome == "succeeded" and out.telemetry is None and read.n == 0
    assert out.to_dict()["telemetry"] is None
