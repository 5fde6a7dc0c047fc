"""LLM: the offline engine. LLM(model_dir, **options).generate(prompts, sampling_params)."""

from __future__ import annotations

import gc
import os
import sys
import time
from dataclasses import fields

import torch

from engine.errors import BadInput
from engine.latency import RequestTiming
from engine.nano.block_manager import BlockManager
from engine.nano.config import EngineConfig, ModelConfig
from engine.nano.kernels.card import Card
from engine.nano.model_runner import ModelRunner
from engine.nano.sampling import SamplingParams
from engine.nano.scheduler import Batch, Scheduler
from engine.nano.sequence import Sequence

DEFAULT_MAX_MODEL_LEN = 4096


def _resolve(cfg: EngineConfig) -> None:
    """Fill in device, dtype (bfloat16 on CUDA, float16 on cards without it) and attention
    backend."""
    if cfg.device is None:
        cfg.device = "cuda" if torch.cuda.is_available() else "cpu"
    on_cuda = torch.device(cfg.device).type == "cuda"
    card = Card.of(cfg.device) if on_cuda else None
    if cfg.dtype is None:
        cfg.dtype = "float32" if card is None else "bfloat16" if card.has_bf16 else "float16"
        if card is not None and not card.has_bf16:
            print(f"nano: {card.name} (compute capability {card.arch // 10}.{card.arch % 10}) "
                  "has no bfloat16: running in float16", file=sys.stderr, flush=True)
    if not isinstance(getattr(torch, cfg.dtype, None), torch.dtype):
        raise ValueError(f"unknown dtype {cfg.dtype!r}")
    if cfg.dtype == "bfloat16" and card is not None and not card.has_bf16:
        raise ValueError(f"{card.name} has no bfloat16 (compute capability below 8.0): "
                         "use dtype float16")
    if cfg.attention_backend == "auto":
        cfg.attention_backend = "triton" if on_cuda else "torch"
    if cfg.attention_backend == "triton" and not on_cuda and os.environ.get(
        "TRITON_INTERPRET"
    ) != "1":
        raise ValueError("attention_backend 'triton' on CPU runs only under TRITON_INTERPRET=1")
    # The torch attention path syncs with the host (it reads lengths), so it cannot be captured.
    if not on_cuda or cfg.attention_backend == "torch":
        cfg.enforce_eager = True


class LLM:
    def __init__(self, model_dir: str, **options):
        known = {f.name for f in fields(EngineConfig)} - {"model_dir"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown nano options {unknown} (known: {sorted(known)})")
        self.config = cfg = EngineConfig(model_dir=str(model_dir), **options)
        self.model_config = mcfg = ModelConfig.from_dir(model_dir)
        _resolve(cfg)
        self.max_model_len = min(cfg.max_model_len or DEFAULT_MAX_MODEL_LEN,
                                 mcfg.max_position_embeddings)
        self.runner = ModelRunner(cfg, mcfg, self.max_model_len)
        cfg.block_size = self.runner.block_size  # 0 (auto) resolved with the cache's size
        capacity = self.runner.num_blocks * cfg.block_size
        if capacity < self.max_model_len:
            # Deterministic where the size was asked for: bad input, not worth a retry.
            error = ValueError if cfg.kv_cache_tokens is None else BadInput
            raise error(
                f"the KV cache holds {capacity} tokens ({self.runner.num_blocks} blocks of "
                f"{cfg.block_size}), less than one sequence of max_model_len "
                f"{self.max_model_len}: give it more memory or lower max_model_len"
            )
        self.block_manager = BlockManager(
            self.runner.num_blocks, cfg.block_size, cfg.enable_prefix_caching
        )
        self.scheduler = Scheduler(
            self.block_manager, cfg.max_num_seqs, cfg.max_num_batched_tokens,
            self.max_model_len, mcfg.eos_token_ids, cfg.admission_lookahead,
        )
        self.timings = dict(self.runner.timings)
        self.last_stats: dict = {}
        self.last_timings: list[RequestTiming] = []  # of the last generate, one a prompt
        if self.runner.is_cuda and cfg.attention_backend == "triton":
            t = time.perf_counter()
            self.compile_kernels()
            self.timings["compile_s"] = time.perf_counter() - t

    def compile_kernels(self) -> None:
        """Run one short generate at start so that every kernel a timed generate meets is
        compiled now: Triton compiles a kernel at its first launch, a second or more on a
        fresh machine. The profiling pass and graph capture have met the model's kernels;
        this meets the sampler's, and eager decode's under enforce_eager. The kernels take
        the integer arguments that change between steps (block-table widths, seeds, split
        counts) unspecialised, so one compile of each serves every step."""
        params = SamplingParams(temperature=1.0, max_tokens=2, ignore_eos=True)
        longer = max(1, min(self.config.block_size + 1, self.max_model_len - 2))
        self.generate([[0], [0] * longer], params)
        self.last_stats, self.last_timings = {}, []

    def _run_steps(self, stats: dict) -> None:
        """Step until every sequence has ended. With async_scheduling, a decode step is
        queued on the device before the host reads the previous step's tokens, so that the
        host's work (reading them back, scheduling, preparing the inputs) overlaps the GPU's
        instead of leaving it idle. The host waits for the tokens only where the next step
        needs them (Scheduler.must_wait_for_tokens). The tokens are those of the synchronous
        loop, except that with end tokens and temperature > 0 the random draws differ: the
        step queued after a sequence's end token still samples a row for it."""
        sched, runner = self.scheduler, self.runner
        pending = None  # a decode step queued and advanced, its tokens not read yet
        while True:
            # Waiting for a decode step's tokens counts for the decode steps, the rest of
            # an iteration for the kind of step it queues.
            t = time.perf_counter()
            if pending is not None and (not self.config.async_scheduling
                                        or sched.must_wait_for_tokens()):
                self._complete(*pending)
                pending = None
                now = time.perf_counter()
                stats["decode_s"] += now - t
                t = now
            if sched.is_finished():
                break
            batch = sched.schedule()
            tokens = runner.launch(batch, pending[1] if pending else None)
            sched.advance(batch)
            if pending is not None:
                self._complete(*pending)
                pending = None
            if batch.is_prefill:
                self._complete(batch, tokens)
            else:
                pending = (batch, tokens)
            kind = "prefill" if batch.is_prefill else "decode"
            stats[f"{kind}_s"] += time.perf_counter() - t
            stats[f"{kind}_steps"] += 1
            stats[f"{kind}_tokens"] += batch.num_tokens

    def _complete(self, batch: Batch, tokens: torch.Tensor) -> None:
        """Read a step's tokens back (the host waits here for the device) and record them,
        with the time they became known: one clock reading a step, not one a token."""
        token_ids = tokens.tolist()
        self.scheduler.complete(batch, token_ids, time.perf_counter())

    def reset(self) -> None:
        """Between two generates, the same state for every one that follows a reset: the
        prefix cache empty, the free blocks in their first order, the sampler's draws from
        the seed. A generate after another then meets no cached prefix, the same placement
        of blocks and the same random draws. Counters since start (preemptions, hit tokens)
        stay: a generate's figures are differences."""
        if not self.scheduler.is_finished():
            raise RuntimeError("reset while sequences are in flight")
        self.block_manager.reset()
        self.runner.reseed()
        self.last_stats, self.last_timings = {}, []

    @property
    def num_kv_blocks(self) -> int:
        return self.runner.num_blocks

    def generate(
        self,
        prompt_token_ids: list[list[int]],
        sampling_params: SamplingParams | list[SamplingParams],
    ) -> list[list[int]]:
        """Run every prompt to completion; return each one's generated token ids, in order.
        A prompt that can never run (empty, longer than max_model_len) raises ValueError
        naming its index, before any work starts. last_stats and last_timings describe the
        run; the timings are from this call's start."""
        start = time.perf_counter()
        if isinstance(sampling_params, SamplingParams):
            sampling_params = [sampling_params] * len(prompt_token_ids)
        if len(sampling_params) != len(prompt_token_ids):
            raise ValueError("one SamplingParams per prompt, or a single one for all")
        seqs = [
            Sequence(p, sp, self.config.block_size)
            for p, sp in zip(prompt_token_ids, sampling_params, strict=True)
        ]
        for i, seq in enumerate(seqs):
            try:
                self.scheduler.validate(seq)
            except ValueError as e:
                raise ValueError(f"request {i}: {e}") from None
        for seq in seqs:
            self.scheduler.add(seq)
        stats = {"prefill_s": 0.0, "decode_s": 0.0, "prefill_steps": 0, "decode_steps": 0,
                 "prefill_tokens": 0, "decode_tokens": 0}
        preempt0 = self.scheduler.num_preemptions
        hits0 = self.block_manager.num_hit_tokens
        # The step loop makes no reference cycles; a cyclic collection in it would only be
        # a pause of the host between two GPU steps, over every object the process holds.
        gc_enabled = gc.isenabled()
        gc.disable()
        try:
            self._run_steps(stats)
        finally:
            if gc_enabled:
                gc.enable()
        stats["preemptions"] = self.scheduler.num_preemptions - preempt0
        stats["prefix_hit_tokens"] = self.block_manager.num_hit_tokens - hits0
        self.last_stats = stats
        self.last_timings = [
            RequestTiming(s.first_token_at - start, s.last_token_at - start,
                          s.num_completion_tokens)
            for s in seqs
        ]
        return [s.completion_token_ids for s in seqs]
