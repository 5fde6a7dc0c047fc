"""Adapter: engine.bench drives the nano engine (engine/nano) through this."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import torch

from engine import variants
from engine.engines import allocator
from engine.job import BenchJob
from engine.nano import LLM, SamplingParams
from engine.nano.step_profile import profile_first_steps
from engine.result import StepProfile


class NanoEngine:
    def __init__(self, llm: LLM):
        self.llm = llm
        self.device = torch.device(llm.config.device)
        self.timings: dict[str, float] = dict(llm.timings)

    def generate(
        self, prompts: list[list[int]], max_tokens: list[int], temperature: float, ignore_eos: bool
    ) -> list[list[int]]:
        if len(prompts) != len(max_tokens):
            raise ValueError(f"{len(prompts)} prompts but {len(max_tokens)} max_tokens")
        params = [SamplingParams(temperature, n, ignore_eos) for n in max_tokens]
        return self.llm.generate(prompts, params)

    def stats(self) -> dict[str, Any]:
        bs = self.llm.config.block_size
        return dict(self.llm.last_stats) | {
            "request_timings": list(self.llm.last_timings),
            "kv_blocks": self.llm.num_kv_blocks,
            "block_size": bs,
            "kv_tokens": self.llm.num_kv_blocks * bs,
            "dtype": self.llm.config.dtype,
        }

    def profile_kernels(self, prompts: list[list[int]], max_tokens: list[int],
                        temperature: float, ignore_eos: bool) -> list[StepProfile]:
        """The workload's first prefill and decode steps at this engine's batch, profiled
        (engine/nano/step_profile.py)."""
        params = [SamplingParams(temperature, n, ignore_eos) for n in max_tokens]
        return profile_first_steps(self.llm, prompts, params)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def reset(self) -> None:
        self.llm.reset()
        allocator.settle(self.device)

    def peak_memory_bytes(self) -> int | None:
        return self.llm.runner.peak_memory_bytes()

    def close(self) -> None:
        self.llm = None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def start(job: BenchJob, model_dir: str | Path) -> NanoEngine:
    kind = variants.kind(job.engine)
    # Every option of the kind is a field of EngineConfig (engine/nano/config.py).
    llm = LLM(
        str(model_dir),
        max_num_seqs=job.max_num_seqs,
        max_model_len=job.max_model_len,
        gpu_memory_utilization=job.gpu_memory_utilization,
        **kind.resolved(kind.normalize(job.options)),
    )
    return NanoEngine(llm)
