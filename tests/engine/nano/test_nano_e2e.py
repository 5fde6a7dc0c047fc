"""The whole engine on CPU fp32: greedy tokens identical to transformers' generate."""

from __future__ import annotations

import os
import time

import pytest
import torch

from engine.errors import BadInput
from engine.latency import summarize
from engine.nano import LLM as _LLM
from engine.nano import SamplingParams
from tests.engine.nano.conftest import needs_triton

MAX_TOKENS = 12
LENS = [1, 7, 16, 29, 45, 64, 3]
GREEDY = SamplingParams(temperature=0, max_tokens=MAX_TOKENS, ignore_eos=True)


def prompts(lens=LENS, seed=0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 10000, (n,), generator=g).tolist() for n in lens]


def shared_prefix_prompts() -> list[list[int]]:
    base = prompts([40], seed=7)[0]
    tails = prompts([3, 9, 1, 17], seed=8)
    return [base + t for t in tails] + [base[:24]]


def LLM(model_dir, **options):  # noqa: N802
    """These tests compare with transformers in fp32 on CPU, also on a machine with CUDA."""
    return _LLM(model_dir, device="cpu", **options)


_hf_cache: dict = {}


def hf_greedy(model_dir: str, ps: list[list[int]], n: int = MAX_TOKENS) -> list[list[int]]:
    """transformers' generate, one prompt at a time (no padding), fp32."""
    from transformers import AutoModelForCausalLM

    if model_dir not in _hf_cache:
        _hf_cache[model_dir] = AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=torch.float32
        ).eval()
    model = _hf_cache[model_dir]
    out = []
    with torch.inference_mode():
        for p in ps:
            ids = model.generate(torch.tensor([p]), max_new_tokens=n, min_new_tokens=n,
                                 do_sample=False, eos_token_id=None, pad_token_id=0)
            out.append(ids[0, len(p):].tolist())
    return out


ARCHS = ["tiny", "tiny-qwen3", "qwen2-tied"]


@pytest.mark.parametrize("arch", ARCHS)
def test_greedy_matches_transformers(checkpoints, arch):
    d = checkpoints[arch]
    llm = LLM(d, block_size=8, max_num_seqs=4, max_model_len=128)
    ps = prompts()
    assert llm.generate(ps, GREEDY) == hf_greedy(d, ps)
    assert llm.last_stats["preemptions"] == 0


@pytest.mark.parametrize(("arch", "lookahead"), [("tiny", 0), ("tiny-qwen3", 0), ("tiny", 24)])
def test_greedy_matches_with_preemption(checkpoints, arch, lookahead):
    d = checkpoints[arch]
    # 12 blocks of 8 = 96 tokens for 7 prompts of 165 tokens + 84 generated: must preempt.
    llm = LLM(d, block_size=8, max_num_seqs=8, max_model_len=96, kv_cache_tokens=96,
              admission_lookahead=lookahead)
    ps = prompts()
    assert llm.generate(ps, GREEDY) == hf_greedy(d, ps)
    assert (llm.last_stats["preemptions"] > 0) == (lookahead == 0)


@pytest.mark.parametrize("arch", ["tiny", "tiny-qwen3"])
def test_greedy_matches_with_prefix_cache_hits(checkpoints, arch):
    d = checkpoints[arch]
    ps = shared_prefix_prompts()
    want = hf_greedy(d, ps)
    # max_num_seqs 1: each prompt runs after the previous one computed the shared blocks.
    llm = LLM(d, block_size=8, max_num_seqs=1, max_model_len=128)
    assert llm.generate(ps, GREEDY) == want
    assert llm.last_stats["prefix_hit_tokens"] == 3 * 40 + 16  # 5 shared blocks, 2 for the last
    # A second call hits the blocks the first one left cached (freed, not yet reused).
    assert llm.generate(ps[:2], GREEDY) == want[:2]
    assert llm.last_stats["prefix_hit_tokens"] >= 80


def test_greedy_matches_with_chunked_prefill(checkpoints):
    d = checkpoints["tiny"]
    llm = LLM(d, block_size=8, max_num_seqs=4, max_model_len=128, max_num_batched_tokens=13)
    ps = prompts()
    assert llm.generate(ps, GREEDY) == hf_greedy(d, ps)
    assert llm.last_stats["prefill_steps"] >= sum(LENS) // 13


def test_prefix_caching_off_gives_the_same_tokens(checkpoints):
    d = checkpoints["tiny-qwen3"]
    ps = shared_prefix_prompts()
    llm = LLM(d, block_size=8, max_num_seqs=1, max_model_len=128, enable_prefix_caching=False)
    assert llm.generate(ps, GREEDY) == hf_greedy(d, ps)
    assert llm.last_stats["prefix_hit_tokens"] == 0


def test_kernel_warm_up_leaves_nothing_behind(checkpoints):
    d = checkpoints["tiny"]
    llm = LLM(d, block_size=8, max_num_seqs=4, max_model_len=96, kv_cache_tokens=96)
    llm.compile_kernels()  # LLM runs it at start on CUDA; 34 requests in waves of 4 here
    assert llm.block_manager.num_free_blocks == 12 and llm.last_stats == {}
    ps = prompts()
    assert llm.generate(ps, GREEDY) == hf_greedy(d, ps)


@needs_triton
@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1", reason="needs the interpreter")
def test_triton_backend_under_the_interpreter(checkpoints):
    d = checkpoints["tiny-qwen3"]
    ps = prompts([5, 19, 2], seed=3)
    llm = LLM(d, block_size=8, max_num_seqs=4, max_model_len=64, attention_backend="triton",
              max_num_batched_tokens=16)
    assert llm.generate(ps, SamplingParams(0, 4, True)) == hf_greedy(d, ps, 4)


FUSE_ARCHS = ["qwen2-norms", "qwen3-bias-norms", "tiny-qwen3"]


@pytest.mark.parametrize("fuse", [False, True])
@pytest.mark.parametrize("arch", FUSE_ARCHS)
def test_fuse_norm_linear_matches_transformers(checkpoints, arch, fuse):
    """RMSNorm weights folded into qkv_proj and gate_up_proj, 1/rms applied after the GEMM
    (Qwen3: before its q/k norm, with attention bias): greedy tokens as transformers'."""
    d = checkpoints[arch]
    llm = LLM(d, block_size=8, max_num_seqs=4, max_model_len=128, fuse_norm_linear=fuse)
    assert all(layer.norms_folded == fuse for layer in llm.runner.model.model.layers)
    ps = prompts()
    assert llm.generate(ps, GREEDY) == hf_greedy(d, ps)


@needs_triton
@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1", reason="needs the interpreter")
@pytest.mark.parametrize("arch", ["qwen2-norms", "qwen3-bias-norms"])
def test_fuse_norm_linear_triton_backend_under_the_interpreter(checkpoints, arch):
    """The Triton attention path, whose KV store finishes v (scale, bias) when fused."""
    d = checkpoints[arch]
    ps = prompts([5, 19, 2], seed=3)
    want = hf_greedy(d, ps, 4)
    for fuse in (False, True):
        llm = LLM(d, block_size=8, max_num_seqs=4, max_model_len=64, attention_backend="triton",
                  max_num_batched_tokens=16, fuse_norm_linear=fuse)
        assert llm.generate(ps, SamplingParams(0, 4, True)) == want


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_head_kv_layout_matches_with_preemption_and_prefix_hits(checkpoints, backend):
    """kv_layout head (a KV head's block contiguous): the same greedy tokens as
    transformers, through a cache of six blocks for three sequences that share two blocks of
    prompt: preempted sequences come back on prefix-cache hits."""
    if backend == "triton" and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("needs the interpreter")
    d = checkpoints["tiny-qwen3"]
    base = prompts([17], seed=7)[0]
    ps = [base + tail for tail in prompts([3, 6, 1], seed=8)]
    llm = LLM(d, block_size=8, max_num_seqs=3, max_model_len=32, kv_cache_tokens=48,
              admission_lookahead=0, kv_layout="head", attention_backend=backend,
              max_num_batched_tokens=32)
    assert llm.runner.kv_cache.shape[2:] == (6, 2, 8, 16)  # [blocks, KV heads, tokens, dim]
    assert llm.generate(ps, SamplingParams(0, 6, True)) == hf_greedy(d, ps, 6)
    assert llm.last_stats["preemptions"] > 0 and llm.last_stats["prefix_hit_tokens"] > 2 * 16


@pytest.mark.parametrize("async_scheduling", [True, False])
def test_request_timings(checkpoints, async_scheduling):
    """Each request's first and last token times, from the generate's start: two prompts
    at a time, so the later prompts, admitted as earlier ones end, get later first tokens;
    the prompts of one prefill step get theirs at the same reading of the clock."""
    llm = LLM(checkpoints["tiny"], block_size=8, max_num_seqs=2, max_model_len=128,
              async_scheduling=async_scheduling)
    t = time.perf_counter()
    llm.generate(prompts(), GREEDY)
    elapsed = time.perf_counter() - t
    timings = llm.last_timings
    assert [r.output_tokens for r in timings] == [MAX_TOKENS] * len(LENS)
    assert all(0 < r.first_token_s < r.last_token_s <= elapsed for r in timings)
    first = [r.first_token_s for r in timings]
    assert first[0] == first[1] < first[2] == first[3] < first[4] == first[5] < first[6]
    figures = summarize(timings)
    assert figures.ttft_p50_s == first[3] and figures.tpot_p50_s > 0


def test_sampling(checkpoints):
    d = checkpoints["tiny"]
    ps = prompts([5, 9, 13])
    llm = LLM(d, block_size=8, max_num_seqs=4, max_model_len=64, seed=1)
    hot = llm.generate(ps, SamplingParams(temperature=1.0, max_tokens=6, ignore_eos=True))
    assert [len(o) for o in hot] == [6, 6, 6]
    assert all(0 <= t < 10240 for o in hot for t in o)
    # top_k 1 is greedy whatever the temperature.
    k1 = llm.generate(ps, SamplingParams(temperature=2.0, max_tokens=6, ignore_eos=True, top_k=1))
    assert k1 == llm.generate(ps, SamplingParams(temperature=0, max_tokens=6, ignore_eos=True))
    mixed = llm.generate(
        ps, [SamplingParams(0, 4, True), SamplingParams(0.8, 5, True, top_p=0.5),
             SamplingParams(0, 3, True)]
    )
    assert [len(o) for o in mixed] == [4, 5, 3]


@pytest.mark.parametrize("max_num_seqs", [8, 3])
def test_async_scheduling_ends_at_end_tokens_like_the_sync_loop(checkpoints, max_num_seqs):
    """Decode steps queued ahead of the host: a sequence that samples an end token has one
    more step queued already, whose token must be dropped; with max_num_seqs 3 prompts wait,
    so the loop switches between queuing ahead and waiting for the tokens."""
    d = checkpoints["tiny"]
    ps = prompts()
    free = LLM(d, block_size=8, max_num_seqs=8, max_model_len=128).generate(ps, GREEDY)
    # End tokens that a few sequences meet mid-way, and one that every sequence meets at once.
    eos = {free[2][3], free[5][7], free[0][0]}
    want = [out[: min([out.index(e) + 1 for e in eos if e in out] or [len(out)])]
            for out in free]
    assert any(len(w) < MAX_TOKENS for w in want)
    params = SamplingParams(temperature=0, max_tokens=MAX_TOKENS, ignore_eos=False)
    for async_scheduling in (True, False):
        llm = LLM(d, block_size=8, max_num_seqs=max_num_seqs, max_model_len=128,
                  async_scheduling=async_scheduling)
        llm.scheduler.eos_token_ids = eos
        assert llm.generate(ps, params) == want
        assert llm.block_manager.num_free_blocks == llm.num_kv_blocks
        assert not llm.scheduler.running and not llm.scheduler.waiting


def test_async_scheduling_end_token_just_before_the_length_limit(checkpoints):
    # The step after the end token is queued, and reaches max_tokens, before the host sees
    # the end token: the end token still ends the sequence.
    d = checkpoints["tiny"]
    ps = prompts([5, 9])
    free = LLM(d, block_size=8, max_model_len=64).generate(ps, SamplingParams(0, 6, True))
    eos = free[0][4]
    assert eos not in free[0][:4]
    for async_scheduling in (True, False):
        llm = LLM(d, block_size=8, max_model_len=64, async_scheduling=async_scheduling)
        llm.scheduler.eos_token_ids = {eos}
        out = llm.generate(ps, SamplingParams(0, 6, False))
        assert out[0] == free[0][:5]
        assert llm.block_manager.num_free_blocks == llm.num_kv_blocks


def test_async_scheduling_frees_ended_sequences_before_preempting(checkpoints):
    # A sequence ends at its length limit on the first decode step after a prefill; the
    # other one needs a new block that only the ended one's can give. No preemption, and
    # certainly no stall, with the decode step queued ahead.
    d = checkpoints["tiny"]
    ps = [[1] * 16, [2] * 7, [3]]
    params = [SamplingParams(0, 2, True), SamplingParams(0, 10, True), SamplingParams(0, 3, True)]
    outs = []
    for async_scheduling, blocks, n in ((True, 4, 2), (False, 4, 2), (True, 5, 3), (False, 5, 3)):
        llm = LLM(d, block_size=8, max_model_len=32, kv_cache_tokens=8 * blocks,
                  async_scheduling=async_scheduling)
        outs.append(llm.generate(ps[:n], params[:n]))
        assert [len(o) for o in outs[-1]] == [p.max_tokens for p in params[:n]]
        assert llm.last_stats["preemptions"] == 0
    assert outs[0] == outs[1] and outs[2] == outs[3]


def test_async_scheduling_samples_the_same_tokens(checkpoints):
    d = checkpoints["tiny-qwen3"]
    ps = prompts([5, 9, 13, 40, 2], seed=4)
    params = SamplingParams(temperature=0.8, max_tokens=9, ignore_eos=True)
    outs = [LLM(d, block_size=8, max_num_seqs=2, max_model_len=64, kv_cache_tokens=72, seed=3,
                async_scheduling=a).generate(ps, params) for a in (True, False)]
    assert outs[0] == outs[1] and [len(o) for o in outs[0]] == [9] * 5


def test_request_errors(checkpoints):
    llm = LLM(checkpoints["tiny"], block_size=8, max_model_len=32)
    with pytest.raises(ValueError, match="request 1: prompt of 33 tokens is longer than"):
        llm.generate([[1, 2], [5] * 33], GREEDY)
    with pytest.raises(ValueError, match="request 0: empty prompt"):
        llm.generate([[]], GREEDY)
    assert llm.generate([[5] * 30], GREEDY) == [llm.generate([[5] * 30], GREEDY)[0]]
    assert len(llm.generate([[5] * 30], GREEDY)[0]) == 2  # stops at max_model_len
    with pytest.raises(ValueError, match="unknown nano options"):
        LLM(checkpoints["tiny"], max_num_seq=3)
    with pytest.raises(BadInput, match="less than one sequence of max_model_len"):
        LLM(checkpoints["tiny"], block_size=8, max_model_len=64, kv_cache_tokens=56)


class _Replay:
    """Stands in for a CUDA graph on CPU: replay() runs the captured function again."""

    def __init__(self, fn):
        self.fn = fn
        fn()

    def replay(self):
        self.fn()


@pytest.mark.parametrize(("backend", "kv_layout"),
                         [("torch", "token"), ("torch", "head"), ("triton", "token")])
def test_static_buffers_as_cuda_graphs_use_them(checkpoints, backend, kv_layout):
    """The paths of CUDA graphs on CPU: decode (static buffers, padded buckets: slot -1,
    context 0, stale block-table rows) and, with Triton attention, prefill (tokens padded to
    the bucket with slot -1, sequences padded with no new tokens, stale rows from the step
    before: a chunked prefill's second step has fewer tokens than its first), and a step of
    more sequences than a prefill graph takes (eager)."""
    if backend == "triton" and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("needs the interpreter")
    d = checkpoints["tiny"]
    llm = LLM(d, block_size=8, max_num_seqs=10, max_model_len=64, attention_backend=backend,
              max_num_batched_tokens=64, kv_layout=kv_layout)
    replays = []

    class Counted(_Replay):
        def replay(self):
            replays.append(self)
            super().replay()

    llm.runner._capture_graphs(capture=lambda fn, pool: Counted(fn))
    assert llm.runner.graph_buckets() == [1, 2, 4, 8, 10]
    runner = llm.runner
    assert runner.prefill_graph_buckets() == ([] if backend == "torch" else [64])
    n = 6 if backend == "torch" else 3
    for lens in ([5, 19, 2, 11, 30], [40, 3], [3, 9, 1, 4, 7, 2, 8, 5, 6]):
        ps = prompts(lens, seed=len(lens))
        replays.clear()
        assert llm.generate(ps, SamplingParams(0, n, True)) == hf_greedy(d, ps, n)
        used = {id(g) for g in runner.prefill_graphs.values()} & {id(g) for g in replays}
        assert bool(used) == (backend == "triton" and len(lens) <= 8)
    runner.cfg.max_num_batched_tokens = 16384
    assert runner.prefill_graph_buckets() == (
        [] if backend == "torch" else [64, 128, 256, 384, 512, 768, 1024, 1536, 2048])
    runner.cfg.prefill_graph_tokens = 0
    assert runner.prefill_graph_buckets() == []
