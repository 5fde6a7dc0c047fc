"""engine/engines/nano.py through engine.bench.run_in_process, and the registry entry."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from engine import variants
from engine.bench import run_in_process
from engine.job import DEFAULT_GPU_MEMORY_UTILIZATION, BenchJob, ModelRef
from engine.nano.config import EngineConfig
from engine.workload import WorkloadSpec


def test_registry_options():
    kind = variants.kind("nano")
    assert kind.module == "engine.engines.nano"
    assert kind.normalize({"block_size": 0, "enforce_eager": True}) == {"enforce_eager": True}
    with pytest.raises(ValueError, match="attention_backend"):
        kind.normalize({"attention_backend": "flash"})
    assert set(kind.resolved({})) >= {
        "enforce_eager", "block_size", "attention_backend", "max_num_batched_tokens",
        "enable_prefix_caching", "async_scheduling", "prefill_graph_tokens", "fuse_norm_linear",
    }
    # An option changes a job's key only when set away from its default.
    assert kind.normalize({"fuse_norm_linear": False}) == {}
    assert kind.normalize({"fuse_norm_linear": True}) == {"fuse_norm_linear": True}
    # Caught when the sweep is read, not in every job's engine start.
    assert kind.normalize({"prefill_graph_tokens": 0}) == {"prefill_graph_tokens": 0}
    for name, bad, least in (("block_size", -1, 0), ("max_num_batched_tokens", -1, 1),
                             ("prefill_graph_tokens", -1, 0)):
        with pytest.raises(ValueError, match=f"option '{name}' must be >= {least}, got {bad}"):
            kind.normalize({name: bad})


def test_options_are_engine_config_fields():
    """One definition: the registry's nano options are EngineConfig's, default for default,
    and the engine checks a value with the registry's own check."""
    kind = variants.kind("nano")
    defaults = {f.name: f.default for f in fields(EngineConfig)}
    assert {n: o.default for n, o in kind.options.items()} == {n: defaults[n]
                                                                for n in kind.options}
    assert kind.options["attention_backend"].default == "auto"
    assert defaults["gpu_memory_utilization"] == DEFAULT_GPU_MEMORY_UTILIZATION
    assert EngineConfig("m").attention_backend == "auto"
    with pytest.raises(ValueError, match="option 'block_size' must be >= 0, got -1"):
        EngineConfig("m", block_size=-1)
    with pytest.raises(ValueError, match="option 'attention_backend' must be one of"):
        EngineConfig("m", attention_backend="flash")
    with pytest.raises(ValueError, match="option 'enforce_eager' must be bool"):
        EngineConfig("m", enforce_eager=1)


def test_registry_imports_without_torch():
    code = ("import sys, engine.variants; engine.variants.kind('nano').options; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    root = Path(__file__).resolve().parents[3]
    r = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("temperature", [0.0, 0.6])
def test_run_in_process_generates_exactly_the_requested_tokens(checkpoints, temperature):
    job = BenchJob(
        engine="nano", variant="nano-test", model=ModelRef(path=checkpoints["tiny"]),
        workload=WorkloadSpec(num_seqs=6, input_len=(10, 60), output_len=(5, 20),
                              temperature=temperature),
        max_num_seqs=4, max_model_len=128,
        options={"block_size": 16, "max_num_batched_tokens": 64},
    )
    r = run_in_process(job)
    assert r.output_tokens == r.requested_output_tokens
    assert r.kv_blocks and r.block_size == 16 and r.kv_tokens == r.kv_blocks * 16
    assert r.prefill_s and r.decode_s and r.load_s > 0
    assert r.peak_memory_bytes and r.device == "cpu"
    assert 0 < r.ttft_p50_s <= r.ttft_p90_s <= r.ttft_p99_s < r.elapsed_s
    assert 0 < r.tpot_p50_s <= r.tpot_p90_s <= r.tpot_p99_s


def test_profile_kernels_adds_steps_and_the_roofline(checkpoints, tmp_path, monkeypatch):
    """A job with profile: kernels: its two steps profiled after the timed run, and (every
    job) its roofline against this CPU's figures, measured into the cache."""
    monkeypatch.setenv("BENCHSWEEP_CACHE", str(tmp_path))
    job = BenchJob(
        engine="nano", variant="nano-test", model=ModelRef(path=checkpoints["tiny"]),
        workload=WorkloadSpec(num_seqs=6, input_len=(10, 60), output_len=(5, 20)),
        max_num_seqs=4, max_model_len=128, options={"block_size": 16}, profile="kernels",
    )
    r = run_in_process(job)
    assert [s.kind for s in r.step_profiles] == ["prefill", "decode"] and r.profile_note is None
    assert r.step_profiles[1].seqs == 4
    line = r.roofline
    assert line.card.startswith("CPU") and line.prefill_flops > 0 and line.decode_bytes > 0
    assert r.floor_s == line.floor_s > 0 and 0 < r.percent_of_floor < 100
    assert r.between_steps_s is not None
    assert list((tmp_path / "cards").iterdir())
