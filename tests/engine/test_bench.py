import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.bench import BadInput, classify, main
from engine.job import BenchJob, ModelRef
from engine.workload import WorkloadSpec, build

ROOT = Path(__file__).resolve().parents[2]
SPEC = WorkloadSpec(num_seqs=5, input_len=(4, 24), output_len=(2, 6), seed=3)


@pytest.fixture(scope="module")
def cache(tiny_cache: Path) -> Path:
    return tiny_cache


def env(cache: Path) -> dict[str, str]:
    return dict(os.environ, BENCHSWEEP_CACHE=str(cache), OMP_NUM_THREADS="1")


def bench(cache: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "engine.bench", *args],
        cwd=ROOT,
        env=env(cache),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def heavy(cache: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The two runs that load torch and transformers, started side by side to save time."""
    tmp = tmp_path_factory.mktemp("heavy")
    job = BenchJob("hf", "hf-base", ModelRef(arch="tiny"), SPEC, max_num_seqs=2)
    (tmp / "job.json").write_text(job.to_json())
    out = tmp / "res" / "result.json"
    cmds = {
        "success": ["--job", str(tmp / "job.json"), "--out", str(out)],
        "self_check": ["--self-check"],
    }
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "engine.bench", *args],
            cwd=ROOT,
            env=env(cache),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, args in cmds.items()
    }
    runs: dict = {"out": out}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=180)
        runs[name] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    return runs


def last_line(r: subprocess.CompletedProcess) -> dict:
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_success(heavy: dict) -> None:
    r, out = heavy["success"], heavy["out"]
    assert r.returncode == 0, r.stderr
    result = last_line(r)
    assert json.loads(out.read_text()) == result
    workload = build(SPEC)
    assert result["workload_fingerprint"] == workload.fingerprint
    assert result["prompt_tokens"] == workload.prompt_tokens
    assert result["output_tokens"] == result["requested_output_tokens"] == sum(workload.max_tokens)
    assert result["model"] == "random:tiny:s0" and result["variant"] == "hf-base"
    assert result["num_seqs"] == 5 and result["max_num_seqs"] == 2
    assert result["options"] == {"attn_implementation": "sdpa", "dtype": "auto"}
    assert result["device"] == "cpu"
    assert result["elapsed_s"] > 0 and result["warmup_s"] > 0 and result["load_s"] > 0
    assert result["output_tok_s"] == pytest.approx(result["output_tokens"] / result["elapsed_s"])
    assert result["prefill_s"] > 0 and result["decode_s"] > 0
    assert 0 < result["ttft_p50_s"] <= result["ttft_p99_s"] < result["elapsed_s"]
    assert result["tpot_p50_s"] > 0
    assert result["peak_memory_bytes"] > 100 * 2**20
    assert result["env"]["torch"] == torch.__version__


def test_bad_model_path(cache: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    job = BenchJob("hf", "hf", ModelRef(path=str(missing)), SPEC, max_num_seqs=2)
    (tmp_path / "job.json").write_text(job.to_json())
    out = tmp_path / "result.json"
    r = bench(cache, "--job", str(tmp_path / "job.json"), "--out", str(out))
    assert r.returncode == 1
    failure = last_line(r)
    assert failure == json.loads(out.read_text())
    assert failure["error_kind"] == "bad_input"
    assert str(missing) in failure["error"] and "\n" not in failure["error"]


def group(*jobs: BenchJob) -> str:
    return "[" + ", ".join(j.to_json() for j in jobs) + "]"


NANO = BenchJob("nano", "nano", ModelRef(arch="tiny"), SPEC, max_num_seqs=2,
                options={"block_size": 8})


@pytest.mark.parametrize(
    ("job_text", "message"),
    [
        (
            group(NANO, dataclasses.replace(NANO, max_num_seqs=4, repeat=1)),
            "the jobs of one engine start differ in more than their repeat",
        ),
        (
            BenchJob("tgi", "x", ModelRef(arch="tiny"), SPEC, 2).to_json(),
            "unknown engine kind 'tgi'",
        ),
        (
            BenchJob("hf", "x", ModelRef(arch="tiny"), SPEC, 2, options={"foo": 1}).to_json(),
            "no option 'foo'",
        ),
        (
            BenchJob("hf", "x", ModelRef(arch="tiny"), WorkloadSpec(name="nope"), 2).to_json(),
            "unknown workload",
        ),
        ("{not json", "cannot read job"),
    ],
)
def test_bad_jobs(cache: Path, tmp_path: Path, job_text: str, message: str) -> None:
    out = tmp_path / "result.json"
    r = bench(cache, "--job", "-", "--out", str(out), stdin=job_text)
    assert r.returncode == 1
    failure = last_line(r)
    assert failure["error_kind"] == "bad_input" and message in failure["error"]
    # What the jobs share failed: a line for each job (one where none could be read).
    jobs = json.loads(job_text) if job_text.startswith("[") else [None]
    assert out.read_text().splitlines() == [json.dumps(failure)] * len(jobs)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_repeats_share_one_engine_start(cache: Path, tmp_path: Path) -> None:
    """Three repeats on one start against one job in a process of its own, side by side: the
    same work, and with the engine reset before each, the same prefix-cache state (block_size
    8: the prompts' blocks would be cache hits for the repeat after them)."""
    (tmp_path / "group.json").write_text(group(*(dataclasses.replace(NANO, repeat=r)
                                                 for r in range(3))))
    (tmp_path / "one.json").write_text(NANO.to_json())
    procs = {name: subprocess.Popen(
        [sys.executable, "-m", "engine.bench", "--job", str(tmp_path / f"{name}.json"),
         "--out", str(tmp_path / f"{name}.out")], cwd=ROOT, env=env(cache),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in ("group", "one")}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=180)
        assert proc.returncode == 0, stderr
        out = lines(tmp_path / f"{name}.out")
        assert [json.loads(line) for line in stdout.strip().splitlines()[-len(out):]] == out
    shared, (alone,) = lines(tmp_path / "group.out"), lines(tmp_path / "one.out")
    assert [r["engine_shared"] for r in shared] == [0, 1, 2] and alone["engine_shared"] is None
    assert shared[0]["load_s"] > 0 and alone["load_s"] > 0
    # The process's start until its engine starts (imports, torch's among them: over half a
    # second here, where the interpreter alone takes a tenth) is the first job's.
    assert shared[0]["imports_s"] > 0.5 and alone["imports_s"] > 0.5
    assert [r["imports_s"] for r in shared[1:]] == [0, 0]
    for r in shared[1:]:  # the start is the first repeat's
        assert r["load_s"] == r["profile_s"] == r["compile_s"] == r["capture_s"] == 0
        assert r["start_s"] == r["warmup_s"] > 0
    for r in shared:
        assert r["output_tokens"] == r["requested_output_tokens"] == alone["output_tokens"]
        assert r["elapsed_s"] > 0 and r["workload_fingerprint"] == alone["workload_fingerprint"]
        for figure in ("prefill_tokens", "decode_steps", "preemptions", "kv_blocks"):
            assert r[figure] == alone[figure], figure


def test_a_failed_repeat_keeps_the_results_before_it(cache: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The second repeat's timed generate runs out of memory: the first repeat's result
    stays, the failure is the second's, and the third does not run on an engine in an
    unknown state (its line is missing: the runner sends it back)."""
    from engine.engines import nano

    monkeypatch.setenv("BENCHSWEEP_CACHE", str(cache))
    real, calls = nano.NanoEngine.generate, []

    def generate(self, *args):
        calls.append(len(args[0]))
        if len(calls) == 4:  # warm-up and timed generate of repeat 0, warm-up of repeat 1
            raise RuntimeError("CUDA error: out of memory")
        return real(self, *args)

    monkeypatch.setattr(nano.NanoEngine, "generate", generate)
    (tmp_path / "group.json").write_text(group(*(dataclasses.replace(NANO, repeat=r)
                                                 for r in range(3))))
    code = main(["--job", str(tmp_path / "group.json"), "--out", str(tmp_path / "out")])
    assert code == 1 and len(calls) == 4
    first, failed = lines(tmp_path / "out")
    assert first["engine_shared"] == 0
    assert first["output_tokens"] == first["requested_output_tokens"]
    assert failed == {"error": "RuntimeError: CUDA error: out of memory", "error_kind": "oom"}


def test_classify() -> None:
    assert classify(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate")) == "oom"
    assert classify(RuntimeError("CUDA error: out of memory")) == "oom"
    assert classify(MemoryError()) == "oom"
    assert classify(BadInput("x")) == "bad_input"
    assert classify(RuntimeError("shape mismatch")) == "engine"


def test_self_check(heavy: dict) -> None:
    r = heavy["self_check"]
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip().splitlines()[-1]
    # Every registered engine that imports here runs; hf always can.
    assert line.startswith("self-check ok: ") and re.search(r"\bhf \d+ tok in ", line), line
