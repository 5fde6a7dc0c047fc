"""A smaller card's budget on a larger one: kv_cache_tokens and card_memory_gib, one
definition each, honoured by nano and mapped onto vLLM's arguments, sweepable as axes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import memory_budget, variants
from engine.checkpoints import write_checkpoint
from engine.engines import vllm as vllm_adapter
from engine.errors import BadInput
from engine.job import BenchJob, ModelRef
from engine.nano import LLM, SamplingParams
from engine.workload import WorkloadSpec
from orchestrator.spec import SpecError, parse

GIB = 1 << 30
NANO, VLLM, HF = (variants.kind(k) for k in ("nano", "vllm", "hf"))


def test_one_definition_for_both_engines() -> None:
    for name, opt in memory_budget.BUDGET_OPTIONS.items():
        assert NANO.options[name] is opt and VLLM.options[name] is opt
        assert name not in HF.options
    assert NANO.normalize({"kv_cache_tokens": None, "card_memory_gib": 24}) == {
        "card_memory_gib": 24.0}
    for bad, match in (({"kv_cache_tokens": 0}, "must be >= 1"),
                       ({"card_memory_gib": 0}, "must be > 0"),
                       ({"card_memory_gib": "24GB"}, "must be float")):
        with pytest.raises(ValueError, match=match):
            VLLM.normalize(bad)
    with pytest.raises(ValueError, match="may not set 'kv_cache_memory_bytes'"):
        VLLM.normalize({"engine_args": {"kv_cache_memory_bytes": 1 << 30}})


def _vllm_job(**options) -> BenchJob:
    return BenchJob("vllm", "v", ModelRef(arch="qwen2-7b"), WorkloadSpec(), max_num_seqs=256,
                    gpu_memory_utilization=0.9, options=VLLM.normalize(options))


@pytest.fixture
def qwen2_7b_config(tmp_path: Path) -> Path:
    from engine.archs import ARCHS

    (tmp_path / "config.json").write_text(json.dumps(ARCHS["qwen2-7b"]))
    return tmp_path


def test_vllm_gets_the_cache_in_bytes_and_the_card_as_a_share(qwen2_7b_config: Path) -> None:
    h200 = 150_754_820_096
    job = _vllm_job(kv_cache_tokens=100_000, card_memory_gib=24)
    kwargs = vllm_adapter.llm_kwargs(job, qwen2_7b_config, VLLM.resolved(job.options), h200)
    # Qwen2-7B: 28 layers x 4 KV heads x 128 x K and V x 2 bytes = 57,344 bytes a token.
    assert kwargs["kv_cache_memory_bytes"] == 100_000 * 57_344
    assert kwargs["gpu_memory_utilization"] == pytest.approx(0.9 * 24 * GIB / h200)
    plain = _vllm_job()
    kwargs = vllm_adapter.llm_kwargs(plain, qwen2_7b_config, VLLM.resolved({}), h200)
    assert "kv_cache_memory_bytes" not in kwargs and kwargs["gpu_memory_utilization"] == 0.9

    too_big = _vllm_job(card_memory_gib=200)
    with pytest.raises(BadInput, match="card_memory_gib 200 is more than this GPU's 140.4 GiB"):
        vllm_adapter.llm_kwargs(too_big, qwen2_7b_config, VLLM.resolved(too_big.options), h200)
    with pytest.raises(BadInput, match="NVML cannot read it"):
        vllm_adapter.llm_kwargs(job, qwen2_7b_config, VLLM.resolved(job.options), None)


def test_nano_takes_smaller_blocks_where_the_cache_is_tight(tmp_path: Path) -> None:
    """Block size 0 (the default): 256 where the cache holds every sequence at full length,
    64 where it cannot; a block size given stays."""
    d = write_checkpoint("tiny", tmp_path / "tiny", dtype="float32")
    plenty = LLM(d, device="cpu", max_num_seqs=4, max_model_len=64, kv_cache_tokens=512)
    assert (plenty.config.block_size, plenty.num_kv_blocks) == (256, 2)
    tight = LLM(d, device="cpu", max_num_seqs=4, max_model_len=64, kv_cache_tokens=200)
    assert (tight.config.block_size, tight.num_kv_blocks) == (64, 3)
    assert tight.generate([[1] * 40] * 4, SamplingParams(0, 20, True))  # it runs, preempting
    given = LLM(d, device="cpu", max_num_seqs=4, max_model_len=64, kv_cache_tokens=200,
                block_size=16)
    assert (given.config.block_size, given.num_kv_blocks) == (16, 12)


def test_nano_sizes_its_cache_from_kv_cache_tokens(tmp_path: Path) -> None:
    d = write_checkpoint("tiny", tmp_path / "tiny", dtype="float32")
    llm = LLM(d, device="cpu", block_size=16, max_model_len=64, kv_cache_tokens=100)
    assert llm.num_kv_blocks == 6  # whole blocks: 96 of the 100 tokens
    with pytest.raises(BadInput, match="the KV cache holds 48 tokens .* less than one sequence"):
        LLM(d, device="cpu", block_size=16, max_model_len=64, kv_cache_tokens=48)


SWEEP = """
name: budget
model: {arch: tiny}
workload: {name: standard, num_seqs: 4}
variants:
  nano: {kind: nano}
  vllm: {kind: vllm}
  hf: {kind: hf}
matrix:
  max_num_seqs: [4]
  kv_cache_tokens: [null, 4096]
  card_memory_gib: [24]
"""


def test_budget_axes_apply_to_the_engines_that_have_them() -> None:
    jobs = [p.job for p in parse(SWEEP).expand()]
    by = {(j.variant, j.options.get("kv_cache_tokens")): j for j in jobs}
    assert set(by) == {("nano", None), ("nano", 4096), ("vllm", None), ("vllm", 4096),
                       ("hf", None)}
    assert by[("nano", 4096)].options == {"kv_cache_tokens": 4096, "card_memory_gib": 24.0}
    assert by[("hf", None)].options == {}
    with pytest.raises(SpecError, match=r"matrix.kv_cache_tokens\[1\]: option "
                                        r"'kv_cache_tokens' must be >= 1, got -5"):
        parse(SWEEP.replace("[null, 4096]", "[null, -5]"))
