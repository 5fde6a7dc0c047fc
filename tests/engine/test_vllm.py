"""The vllm engine variant on a machine without vLLM: its options, its mapping onto
LLM(...), its start-up log parsing, and the one-line failure of a worker without vLLM."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine import variants
from engine.engines import vllm as adapter
from engine.engines import vllm_log
from engine.job import BenchJob, ModelRef
from engine.latency import RequestTiming
from engine.result import BenchResult
from engine.workload import WorkloadSpec
from orchestrator.spec import SpecError, parse

ROOT = Path(__file__).resolve().parents[2]
VLLM = variants.kind("vllm")

SWEEP = """
name: v
model: {arch: tiny}
workload: {name: standard, num_seqs: 4}
variants:
  vllm: {kind: vllm}
  vllm-eager:
    kind: vllm
    options: {enforce_eager: true, engine_args: {swap_space: 0, seed: 1}}
matrix:
  variant: [vllm, vllm-eager]
  max_num_seqs: [64, 256]
"""


def test_options_normalize_to_stable_values() -> None:
    assert VLLM.normalize({}) == {}
    # Spelling out a default changes nothing, so it does not change a job's key.
    assert VLLM.normalize({"enforce_eager": False, "enable_prefix_caching": True,
                           "dtype": "bfloat16", "engine_args": {}}) == {}
    opts = VLLM.normalize({"engine_args": {"seed": 1}, "block_size": 32})
    assert opts == {"block_size": 32, "engine_args": {"seed": 1}}
    assert list(opts) == ["block_size", "engine_args"]
    resolved = VLLM.resolved(opts)
    assert resolved["enforce_eager"] is False and resolved["max_num_batched_tokens"] is None


@pytest.mark.parametrize(("options", "message"), [
    ({"enforce_eager": "yes"}, "option 'enforce_eager' must be bool"),
    ({"block_size": 16.0}, "option 'block_size' must be int"),
    ({"block_size": 0}, "option 'block_size' must be >= 1, got 0"),
    ({"dtype": "float32"}, "must be one of ['auto', 'bfloat16', 'float16']"),
    ({"engine_args": [1]}, "option 'engine_args' must be dict"),
    ({"engine_args": {"max_num_seqs": 8}}, "may not set 'max_num_seqs'"),
    ({"engine_args": {"not a name": 1}}, "is not an argument name"),
    ({"attention_backend": "triton"}, "engine 'vllm' has no option 'attention_backend'"),
])
def test_bad_options(options: dict, message: str) -> None:
    with pytest.raises(ValueError) as e:
        VLLM.normalize(options)
    assert message in str(e.value)


def test_sweep_expands_vllm_jobs() -> None:
    planned = parse(SWEEP).expand()
    assert [(p.job.variant, p.job.max_num_seqs) for p in planned] == [
        ("vllm", 64), ("vllm", 256), ("vllm-eager", 64), ("vllm-eager", 256)]
    eager = planned[2].job
    assert eager.engine == "vllm"
    assert eager.options == {"enforce_eager": True, "engine_args": {"seed": 1, "swap_space": 0}}
    # The same sweep with the dict keys in another order and a default spelt out: same keys.
    again = parse(SWEEP.replace("{swap_space: 0, seed: 1}", "{seed: 1, swap_space: 0}")
                  .replace("vllm: {kind: vllm}",
                           "vllm: {kind: vllm, options: {enforce_eager: false}}")).expand()
    assert [p.key for p in again] == [p.key for p in planned]
    assert len({p.key for p in planned}) == 4


def test_sweep_rejects_bad_vllm_option() -> None:
    with pytest.raises(SpecError) as e:
        parse(SWEEP.replace("seed: 1}", "max_model_len: 512}"))
    assert "variants.vllm-eager.options" in str(e.value)
    assert "may not set 'max_model_len'" in str(e.value)


def test_phase1_sweep_plans_without_vllm() -> None:
    from orchestrator.spec import load

    planned = load(ROOT / "sweeps" / "phase1.yaml").expand()
    assert len(planned) == 9
    assert {p.job.engine for p in planned} == {"hf", "nano", "vllm"}
    assert "vllm" not in sys.modules


def test_llm_kwargs_map_the_job() -> None:
    job = BenchJob("vllm", "v", ModelRef(arch="tiny"), WorkloadSpec(), max_num_seqs=128,
                   gpu_memory_utilization=0.8, max_model_len=4096,
                   options=VLLM.normalize({"enforce_eager": True,
                                           "engine_args": {"seed": 7}}))
    kwargs = adapter.llm_kwargs(job, "/m", VLLM.resolved(job.options))
    assert kwargs == {
        "model": "/m", "skip_tokenizer_init": True, "dtype": "bfloat16", "max_num_seqs": 128,
        "gpu_memory_utilization": 0.8, "enforce_eager": True, "enable_prefix_caching": True,
        "max_model_len": 4096, "seed": 7,
    }
    # Unset options are left to vLLM rather than passed as None.
    plain = BenchJob("vllm", "v", ModelRef(arch="tiny"), WorkloadSpec(), max_num_seqs=256)
    kwargs = adapter.llm_kwargs(plain, "/m", VLLM.resolved({}))
    assert not {"max_model_len", "block_size", "max_num_batched_tokens"} & set(kwargs)


def test_latency_metrics_turn_on_vllm_request_stats() -> None:
    """Off by default, so that a default job's LLM(...) and key are what they were."""
    assert VLLM.normalize({"latency_metrics": False}) == {}
    plain = BenchJob("vllm", "v", ModelRef(arch="tiny"), WorkloadSpec(), max_num_seqs=8)
    assert "disable_log_stats" not in adapter.llm_kwargs(plain, "/m", VLLM.resolved({}))
    on = VLLM.normalize({"latency_metrics": True})
    assert adapter.llm_kwargs(plain, "/m", VLLM.resolved(on))["disable_log_stats"] is False
    with pytest.raises(ValueError, match="may not set 'disable_log_stats'"):
        VLLM.normalize({"engine_args": {"disable_log_stats": False}})


def stats(first_ts: float, last_ts: float, n: int) -> SimpleNamespace:
    """A stand-in for vLLM V1's RequestStateStats, with the attributes the adapter reads."""
    return SimpleNamespace(first_token_ts=first_ts, last_token_ts=last_ts,
                           num_generation_tokens=n)


def test_request_timings_from_vllm_request_stats() -> None:
    got = adapter.request_timings([stats(100.5, 102.5, 5), stats(100.25, 100.25, 1)], 100.0)
    assert got == [RequestTiming(0.5, 2.5, 5), RequestTiming(0.25, 0.25, 1)]
    # disable_log_stats: no stats on any output.
    assert adapter.request_timings([None, None], 100.0) is None
    assert adapter.request_timings([stats(100.5, 102.5, 5), None], 100.0) is None
    assert adapter.request_timings([], 100.0) is None
    # A timestamp vLLM did not take (0.0), or one before the generate began: not our clock.
    assert adapter.request_timings([stats(0.0, 102.5, 5)], 100.0) is None
    assert adapter.request_timings([stats(100.5, 100.4, 5)], 100.0) is None


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")
def test_worker_without_vllm_fails_in_one_line(tmp_path: Path) -> None:
    job = BenchJob("vllm", "vllm", ModelRef(arch="qwen2-1.5b"), WorkloadSpec(),
                   max_num_seqs=256)
    (tmp_path / "job.json").write_text(job.to_json())
    out = tmp_path / "out.json"
    r = subprocess.run(
        [sys.executable, "-m", "engine.bench", "--job", str(tmp_path / "job.json"),
         "--out", str(out)],
        cwd=ROOT, env=dict(os.environ, BENCHSWEEP_CACHE=str(tmp_path / "cache")),
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 1
    expected = {"error": "BadInput: vllm is not installed on this worker "
                         "(pip install vllm==0.26.0)", "error_kind": "bad_input"}
    assert json.loads(out.read_text()) == expected
    assert json.loads(r.stdout.strip().splitlines()[-1]) == expected
    # It failed before writing the 3 GB checkpoint the job names.
    assert not (tmp_path / "cache" / "models").exists()


# vLLM 0.26.0's messages, as its logger prints them from the engine-core subprocess.
COLD = """\
(EngineCore pid=812) INFO 05-02 10:00:01 [gpu_model_runner.py:5348] Model loading took 2.88 GiB memory and 3.104712 seconds
(EngineCore pid=812) INFO 05-02 10:00:04 [backends.py:1094] Using cache directory: /c/vllm/h/torch_compile_cache/4f0e1d2c3b/rank_0_0/backbone for vLLM's torch.compile
(EngineCore pid=812) INFO 05-02 10:00:09 [backends.py:378] Cache the graph of compile range (1, 16384) for later use
(EngineCore pid=812) INFO 05-02 10:00:50 [backends.py:393] Compiling a graph for compile range (1, 16384) takes 40.12 s
(EngineCore pid=812) INFO 05-02 10:00:52 [monitor.py:53] torch.compile took 47.31 s in total
(EngineCore pid=812) INFO 05-02 10:00:53 [kv_cache_utils.py:2177] GPU KV cache size: 3,512,064 tokens
(EngineCore pid=812) INFO 05-02 10:01:01 [gpu_model_runner.py:6845] Graph capturing finished in 7 secs, took 0.55 GiB
(EngineCore pid=812) INFO 05-02 10:01:01 [core.py:341] init engine (profile, create kv cache, warmup model) took 58.40 s (compilation: 47.31 s)
"""  # noqa: E501
WARM = """\
(EngineCore pid=90) INFO 05-02 10:05:04 [backends.py:292] Directly load the compiled graph(s) for compile range (1, 16384) from the cache, took 1.210 s
(EngineCore pid=90) INFO 05-02 10:05:05 [monitor.py:53] torch.compile took 4.02 s in total
(EngineCore pid=90) INFO 05-02 10:05:10 [gpu_model_runner.py:6845] Graph capturing finished in 5 secs, took 0.55 GiB
(EngineCore pid=90) INFO 05-02 10:05:10 [core.py:341] init engine (profile, create kv cache, warmup model) took 9.50 s (compilation: 4.02 s)
"""  # noqa: E501
EAGER = """\
(EngineCore pid=7) INFO 05-02 10:09:00 [core.py:348] init engine (profile, create kv cache, warmup model) took 2.25 s
"""  # noqa: E501


def test_start_split_from_the_log() -> None:
    cold = vllm_log.start_split(80.0, COLD)
    assert cold == pytest.approx({"load_s": 21.6, "profile_s": 4.09, "compile_s": 47.31,
                                  "capture_s": 7.0})
    assert sum(cold.values()) == pytest.approx(80.0)
    warm = vllm_log.start_split(16.0, WARM)
    assert warm == pytest.approx({"load_s": 6.5, "profile_s": 0.48, "compile_s": 4.02,
                                  "capture_s": 5.0})
    assert vllm_log.start_split(9.0, EAGER) == pytest.approx(
        {"load_s": 6.75, "profile_s": 2.25, "compile_s": 0.0, "capture_s": 0.0})
    # Nothing recognised: the whole start is load, nothing is lost.
    assert vllm_log.start_split(12.5, "other lines\n") == {
        "load_s": 12.5, "profile_s": 0.0, "compile_s": 0.0, "capture_s": 0.0}


def test_compile_cache_and_kv_from_the_log() -> None:
    assert vllm_log.compile_cache_hit(COLD) is False
    assert vllm_log.compile_cache_hit(WARM) is True
    assert vllm_log.compile_cache_hit(EAGER) is None
    assert vllm_log.kv_cache_tokens(COLD) == 3_512_064
    assert vllm_log.kv_cache_tokens(WARM) is None


def test_log_capture_reads_a_child_process(tmp_path: Path) -> None:
    """Real file descriptors: a child started inside the capture writes after it ended;
    every line reaches the original stderr, the start-up lines are readable."""
    script = f"""
import subprocess, sys
sys.path.insert(0, {str(ROOT)!r})
from engine.engines.vllm_log import INIT, LogCapture
log = LogCapture()
with log:
    print("own line", flush=True)
    child = subprocess.Popen([sys.executable, "-c", '''
import sys, time
print("init engine (profile, create kv cache, warmup model) took 3.50 s", flush=True)
time.sleep(0.3)
print("late line from the child", file=sys.stderr, flush=True)
'''])
text = log.wait_for(INIT, 5.0)
print("parsed", "took 3.50 s" in text and "own line" in text, flush=True)
child.wait()
log.join(5.0)
print("after", flush=True)
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["parsed True", "after"]
    assert r.stderr.splitlines() == [
        "own line", "init engine (profile, create kv cache, warmup model) took 3.50 s",
        "late line from the child"]


def test_old_stored_results_still_load() -> None:
    old = {"engine": "nano", "variant": "nano", "model": "m", "workload": "standard",
           "workload_fingerprint": "f", "num_seqs": 1, "max_num_seqs": 1,
           "gpu_memory_utilization": 0.9, "prompt_tokens": 1, "requested_output_tokens": 1,
           "output_tokens": 1, "elapsed_s": 1.0, "output_tok_s": 1.0}
    r = BenchResult.from_dict(old)
    assert r.compile_cache_warm is None
    assert json.loads(r.to_json())["compile_cache_warm"] is None
