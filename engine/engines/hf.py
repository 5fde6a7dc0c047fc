"""The Hugging Face transformers reference engine: generate() over static batches.

Requests run in workload order, max_num_seqs at a time, left-padded. A batch decodes as many
steps as its longest request asks for; each output is then cut to its own max_tokens (and
after its first eos, unless ignore_eos), so the tokens counted are the tokens asked for.

Latency (request_timings) is that of static batches: a request's first token comes at the
end of its batch's first step (the prefill), its last at the end of its batch's generate,
because generate() hands the host a static batch's tokens all at once at its end. A request
cut short by its max_tokens or an eos still waits for its batch's longest one.
"""

from __future__ import annotations

import gc
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from engine import variants
from engine.engines import allocator
from engine.job import BenchJob
from engine.latency import RequestTiming


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


def max_rss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # Linux reports KiB


class _StepClock:
    """A logits processor that notes when the first step (the prefill) of a batch is done.
    It synchronises the device once a batch; generate() syncs every step anyway."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.first_step_at: float | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.first_step_at is None:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.first_step_at = time.monotonic()
        return scores


@dataclass(frozen=True)
class _BatchClock:
    """When one batch's generate started, ended its first step (the prefill), and ended
    (time.monotonic())."""

    start: float
    prefill_end: float
    end: float


@dataclass
class HFEngine:
    model: Any
    device: torch.device
    dtype: torch.dtype
    max_num_seqs: int
    options: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    _stats: dict[str, Any] = field(default_factory=dict)

    @property
    def eos_ids(self) -> set[int]:
        eos = self.model.config.eos_token_id
        if eos is None:
            return set()
        return {eos} if isinstance(eos, int) else set(eos)

    @property
    def pad_id(self) -> int:
        pad = self.model.config.pad_token_id
        if pad is None:
            pad = min(self.eos_ids, default=0)
        return pad

    def generate(
        self, prompts: list[list[int]], max_tokens: list[int], temperature: float, ignore_eos: bool
    ) -> list[list[int]]:
        if len(prompts) != len(max_tokens):
            raise ValueError(f"{len(prompts)} prompts but {len(max_tokens)} max_tokens")
        outputs: list[list[int]] = []
        timings: list[RequestTiming] = []
        prefill_s = decode_s = 0.0
        t0 = time.monotonic()
        for start in range(0, len(prompts), self.max_num_seqs):
            end = start + self.max_num_seqs
            batch_out, b = self._generate_batch(
                prompts[start:end], max_tokens[start:end], temperature, ignore_eos
            )
            outputs += batch_out
            timings += [RequestTiming(b.prefill_end - t0, b.end - t0, len(o)) for o in batch_out]
            prefill_s += b.prefill_end - b.start
            decode_s += b.end - b.prefill_end
        self._stats = {"prefill_s": prefill_s, "decode_s": decode_s, "request_timings": timings}
        return outputs

    @torch.inference_mode()
    def _generate_batch(
        self, prompts: list[list[int]], max_tokens: list[int], temperature: float, ignore_eos: bool
    ) -> tuple[list[list[int]], _BatchClock]:
        from transformers import LogitsProcessorList

        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, p in enumerate(prompts):
            ids[row, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[row, width - len(p) :] = 1
        eos = sorted(self.eos_ids)
        clock = _StepClock(self.device)
        sampling: dict[str, Any] = (
            # top_k=0 and top_p=1.0 switch off the warpers that transformers adds by default.
            {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
            if temperature > 0
            else {"do_sample": False}
        )
        t0 = time.monotonic()
        out = self.model.generate(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            max_new_tokens=max(max_tokens),
            # The loaded generation config has eos unset (see start()), so None means: never stop.
            eos_token_id=None if ignore_eos or not eos else eos,
            pad_token_id=self.pad_id,
            logits_processor=LogitsProcessorList([clock]),
            **sampling,
        )
        self.synchronize()
        t1 = time.monotonic()
        generated = out[:, width:].tolist()
        results = []
        for tokens, n in zip(generated, max_tokens, strict=True):
            tokens = tokens[:n]
            if not ignore_eos:
                cut = next((i for i, t in enumerate(tokens) if t in self.eos_ids), None)
                if cut is not None:
                    tokens = tokens[: cut + 1]
            results.append(tokens)
        return results, _BatchClock(t0, clock.first_step_at or t1, t1)

    def stats(self) -> dict[str, Any]:
        return dict(self._stats) | {"dtype": str(self.dtype).removeprefix("torch.")}

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def reset(self) -> None:
        """generate() keeps no state (no cache outlives a batch): the allocator only."""
        allocator.settle(self.device)

    def peak_memory_bytes(self) -> int | None:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        return max_rss_bytes()

    def close(self) -> None:
        self.model = None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def start(job: BenchJob, model_dir: str | Path) -> HFEngine:
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    kind = variants.kind(job.engine)
    options = kind.resolved(kind.normalize(job.options))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = resolve_dtype(options["dtype"], device)
    # Import the model's modeling module (seconds of Python imports) before the clock starts,
    # so that load_s measures the weights, not transformers' lazy imports.
    config = AutoConfig.from_pretrained(str(model_dir))
    MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]
    t0 = time.monotonic()
    model = AutoModelForCausalLM.from_pretrained(
        str(model_dir), dtype=dtype, attn_implementation=options["attn_implementation"]
    )
    model.to(device).eval()
    # generate() fills an unset eos from the model's generation config; clear it there so
    # that ignore_eos can pass None. The model config keeps eos for our own truncation.
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = None
    engine = HFEngine(model, device, dtype, job.max_num_seqs, options)
    engine.synchronize()
    engine.timings["load_s"] = time.monotonic() - t0
    return engine
