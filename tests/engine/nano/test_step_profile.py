"""engine/nano/step_profile.py on CPU: the profiler records CPU operators through the same
code path a CUDA run records kernels on; after it the engine is as a finished generate
leaves it, and a generate after a reset gives the tokens it gave before."""

from __future__ import annotations

import pytest

from engine.nano import LLM, SamplingParams
from engine.nano.step_profile import profile_first_steps
from engine.workload import WorkloadSpec, build


@pytest.fixture(scope="module")
def llm(checkpoints) -> LLM:
    return LLM(checkpoints["tiny"], max_num_seqs=4, max_model_len=128, block_size=16,
               max_num_batched_tokens=64)


def test_first_prefill_and_full_decode_step(llm: LLM) -> None:
    w = build(WorkloadSpec(num_seqs=6, input_len=(10, 40), output_len=(5, 12), temperature=0.6))
    params = [SamplingParams(0.6, n, True) for n in w.max_tokens]
    before = llm.generate(w.prompts, params)
    steps = profile_first_steps(llm, w.prompts, params)
    assert [s.kind for s in steps] == ["prefill", "decode"]
    prefill, decode = steps
    # The first prefill step fills the 64-token budget; the decode step holds every admitted
    # sequence, max_num_seqs of them, each attending to its prompt and first token.
    assert prefill.tokens == 64 and 1 <= prefill.seqs <= 4
    assert decode.seqs == decode.tokens == 4
    assert decode.context_tokens == sum(len(p) + 1 for p in w.prompts[:4])
    for s in steps:
        assert s.activity == "cpu" and not s.graph
        assert s.categories_s["gemm"] > 0 and s.categories_s["attention"] > 0
        assert s.busy_s == pytest.approx(sum(s.categories_s.values()))
        assert s.busy_s > 0 and s.wall_s > 0
        assert max(s.top_kernels_s.values()) <= s.busy_s
    assert llm.scheduler.is_finished() and llm.block_manager.num_free_blocks == llm.num_kv_blocks
    llm.reset()
    assert llm.generate(w.prompts, params) == before
