"""Adapter: engine.bench drives vLLM's offline LLM (V1 engine) through this.

vllm is imported only inside start(), in the worker. Prompts go in as token ids with the
tokenizer skipped (a random checkpoint has none), one SamplingParams per request.

Two things differ from nano because vLLM V1 runs its engine core in a subprocess:
- the start split (load / profile / compile / capture) is read from that subprocess's log
  (engine/engines/vllm_log.py), and
- peak memory is NVML's device memory in use above what was in use before the start
  (torch.cuda.max_memory_allocated in this process would not see the engine's memory).

torch.compile costs about a minute per cold start, so VLLM_CACHE_ROOT points at a per-host
directory under the benchsweep cache that every vllm job on the host reuses.

Per-request latency comes from vLLM's own request stats (RequestOutput.metrics), which it
keeps only with disable_log_stats=False: the latency_metrics option turns them on, at some
cost to vLLM's throughput, so by default a vllm result has no latency figures.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib.util
import json
import os
import re
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import checkpoints, envinfo, gpu_hygiene, memory_budget, variants
from engine.engines import vllm_log
from engine.errors import BadInput
from engine.job import BenchJob
from engine.latency import RequestTiming

ROOT_CAUSE = re.compile(r"^.*\b(?:\w+Error|\w+Exception): .+$", re.MULTILINE)


def compile_cache_root() -> Path:
    return checkpoints.cache_root() / "vllm" / socket.gethostname()


def _has_entries(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


@dataclass
class VllmEngine:
    llm: Any
    log: vllm_log.LogCapture
    nvml_device: str | None  # the GPU as NVML names it (index in PCI bus order, or UUID)
    used_before: int | None  # device memory in use before the engine started
    timings: dict[str, float]
    start_stats: dict[str, Any]
    device: str = "cuda"
    used_peak: int | None = None
    last_timings: list[RequestTiming] | None = None  # of the last generate, if vLLM kept stats
    # Why a job with `profile: kernels` has no step profiles (engine.bench records it).
    kernel_profile_note = ("vLLM runs its kernels in its engine core process, which "
                           "torch.profiler in this process does not see: roofline only")

    def generate(
        self, prompts: list[list[int]], max_tokens: list[int], temperature: float, ignore_eos: bool
    ) -> list[list[int]]:
        from vllm import SamplingParams

        if len(prompts) != len(max_tokens):
            raise ValueError(f"{len(prompts)} prompts but {len(max_tokens)} max_tokens")
        # detokenize=False: there is no tokenizer, and the benchmark counts token ids.
        params = [SamplingParams(temperature=temperature, max_tokens=n, ignore_eos=ignore_eos,
                                 detokenize=False) for n in max_tokens]
        start = time.monotonic()
        outputs = self.llm.generate([{"prompt_token_ids": p} for p in prompts], params,
                                    use_tqdm=False)
        self._sample_memory()
        metrics = [o.metrics for o in outputs]
        self.last_timings = request_timings(metrics, start)
        if self.last_timings is None and any(m is not None for m in metrics):
            print("[benchsweep] vLLM's request stats do not fit this process's clock: "
                  "no latency figures", file=sys.stderr, flush=True)
        return [list(o.outputs[0].token_ids) for o in outputs]

    def _sample_memory(self) -> None:
        mem = gpu_hygiene.memory(self.nvml_device) if self.nvml_device else None
        if mem is not None:
            self.used_peak = max(mem[0], self.used_peak or 0)

    def stats(self) -> dict[str, Any]:
        timings = self.last_timings
        return dict(self.start_stats) | ({"request_timings": timings} if timings else {})

    def synchronize(self) -> None:
        """Nothing to wait for: generate() returns once the engine core has sent every
        request's last token."""

    def reset(self) -> None:
        """The engine core's prefix cache emptied (its allocator lives in that process)."""
        reset = getattr(self.llm, "reset_prefix_cache", None)
        if reset is not None and reset() is False:
            raise RuntimeError("vLLM refused to reset its prefix cache")

    def peak_memory_bytes(self) -> int | None:
        self._sample_memory()
        if self.used_peak is None or self.used_before is None:
            return None
        return self.used_peak - self.used_before

    def close(self) -> None:
        core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if core is not None:
            try:
                core.shutdown(timeout=30)
            except Exception as e:  # the worker kills the process group anyway
                print(f"[benchsweep] vLLM shutdown: {type(e).__name__}: {e}", file=sys.stderr)
        self.llm = None
        gc.collect()
        # The engine core's last lines are in the pipe by now. Not waiting longer: a helper
        # such as multiprocessing's resource tracker holds the pipe until this process exits.
        self.log.join(2.0)


def request_timings(metrics: list[Any], start: float) -> list[RequestTiming] | None:
    """Each request's first and last token times from `start`, from vLLM V1's request stats
    (RequestStateStats: first_token_ts, last_token_ts, num_generation_tokens); None where
    vLLM kept none (disable_log_stats) or they do not fit the clock.

    The two timestamps are the engine core's time.monotonic() when it had the token, in
    its own process: CLOCK_MONOTONIC is one clock for the whole host, so they compare with
    `start`, this process's time.monotonic() as the timed generate began. (Its
    first_token_latency is measured from each request's arrival, on the wall clock.)"""
    if not metrics or any(m is None for m in metrics):
        return None
    timings = [RequestTiming(m.first_token_ts - start, m.last_token_ts - start,
                             m.num_generation_tokens) for m in metrics]
    if any(not 0 <= t.first_token_s <= t.last_token_s for t in timings):
        return None  # a timestamp not taken (0.0), or from another clock
    return timings


def resolved_dtype(dtype: str, model_dir: str | Path) -> str:
    """The dtype option's value, "auto" read as the checkpoint's."""
    if dtype != "auto":
        return dtype
    config = json.loads((Path(model_dir) / "config.json").read_text())
    return config.get("torch_dtype") or config.get("dtype") or "bfloat16"


def llm_kwargs(job: BenchJob, model_dir: str | Path, o: dict[str, Any],
               total_bytes: int | None = None) -> dict[str, Any]:
    """LLM(...)'s arguments for a job; total_bytes: the GPU's memory (for card_memory_gib)."""
    kwargs: dict[str, Any] = {
        "model": str(model_dir),
        "skip_tokenizer_init": True,
        "dtype": o["dtype"],
        "max_num_seqs": job.max_num_seqs,
        "gpu_memory_utilization": job.gpu_memory_utilization,
        "enforce_eager": o["enforce_eager"],
        "enable_prefix_caching": o["enable_prefix_caching"],
    }
    if o["latency_metrics"]:
        kwargs["disable_log_stats"] = False
    for name, value in (("max_model_len", job.max_model_len), ("block_size", o["block_size"]),
                        ("max_num_batched_tokens", o["max_num_batched_tokens"])):
        if value is not None:
            kwargs[name] = value
    if o["kv_cache_tokens"] is not None:
        config = json.loads((Path(model_dir) / "config.json").read_text())
        kwargs["kv_cache_memory_bytes"] = (o["kv_cache_tokens"] * memory_budget.kv_bytes_per_token(
            config, resolved_dtype(o["dtype"], model_dir)))
    if o["card_memory_gib"] is not None:
        if total_bytes is None:
            raise BadInput("card_memory_gib needs the GPU's memory size, and NVML cannot "
                           "read it here")
        card = memory_budget.card_bytes(o["card_memory_gib"], total_bytes)
        kwargs["gpu_memory_utilization"] = job.gpu_memory_utilization * card / total_bytes
    return kwargs | o["engine_args"]


def _kv_capacity(llm: Any, text: str) -> dict[str, Any]:
    cfg = getattr(getattr(llm.llm_engine, "vllm_config", None), "cache_config", None)
    blocks = getattr(cfg, "num_gpu_blocks", None)
    block_size = getattr(cfg, "block_size", None)
    tokens = getattr(cfg, "kv_cache_size_tokens", None)
    if not tokens and blocks and block_size:
        tokens = blocks * block_size
    return {"kv_blocks": blocks, "block_size": block_size,
            "kv_tokens": tokens or vllm_log.kv_cache_tokens(text)}


def _start_failed(e: BaseException, text: str) -> BaseException:
    """The engine core's own error is in its log, not in the exception raised here."""
    if re.search(r"out of memory|OutOfMemoryError", text, re.IGNORECASE):
        return MemoryError(f"vLLM ran out of device memory while starting ({e})")
    causes = ROOT_CAUSE.findall(text)
    if causes:
        return RuntimeError(f"{e} Root cause: {causes[-1].strip()[-400:]}")
    return e


def start(job: BenchJob, model_dir: str | Path) -> VllmEngine:
    kind = variants.kind(job.engine)
    o = kind.resolved(kind.normalize(job.options))
    cache = Path(os.environ.setdefault("VLLM_CACHE_ROOT", str(compile_cache_root())))
    cache_had_entries = _has_entries(cache / "torch_compile_cache")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is a local directory
    if importlib.util.find_spec("flashinfer") is None:
        # vLLM's sampler would import FlashInfer otherwise.
        os.environ.setdefault("VLLM_USE_FLASHINFER_SAMPLER", "0")

    t0 = time.monotonic()  # load_s begins with vLLM's own imports (seconds of them)
    import vllm
    from vllm.engine.arg_utils import EngineArgs

    known = {f.name for f in dataclasses.fields(EngineArgs)}
    unknown = sorted(set(o["engine_args"]) - known)
    if unknown:
        raise BadInput(f"option 'engine_args': vLLM {vllm.__version__} has no engine "
                       f"argument {', '.join(map(repr, unknown))}")
    nvml_device = envinfo.visible_device()
    mem_before = gpu_hygiene.memory(nvml_device) if nvml_device else None
    kwargs = llm_kwargs(job, model_dir, o, mem_before[1] if mem_before else None)
    print(f"[benchsweep] vLLM {vllm.__version__}, cache {cache} "
          f"({'has entries' if cache_had_entries else 'empty'}), LLM({kwargs})",
          file=sys.stderr, flush=True)

    log = vllm_log.LogCapture()
    try:
        with log:
            llm = vllm.LLM(**kwargs)
    except Exception as e:
        log.join(5.0)  # the engine core has exited: let its last lines through
        err = _start_failed(e, log.text())
        if err is e:
            raise
        raise err from e
    total = time.monotonic() - t0
    text = log.wait_for(vllm_log.INIT, 2.0)  # the subprocess's lines may still be in the pipe

    # The log tells a hit from a miss; where it says neither, the directory is the guess.
    hit = vllm_log.compile_cache_hit(text)
    if hit is None:
        hit = cache_had_entries
    warm = None if o["enforce_eager"] else hit
    engine = VllmEngine(
        llm, log, nvml_device, mem_before[0] if mem_before else None,
        timings=vllm_log.start_split(total, text),
        start_stats=_kv_capacity(llm, text) | {"compile_cache_warm": warm,
                                                "dtype": resolved_dtype(o["dtype"], model_dir)},
    )
    engine._sample_memory()
    card = o["card_memory_gib"]
    used = engine.used_peak or 0
    if card is not None and used > card * memory_budget.GIB:  # kv_cache_tokens too large
        engine.close()
        raise BadInput(f"vLLM holds {used / memory_budget.GIB:.1f} GiB of the GPU once started, "
                       f"more than card_memory_gib {o['card_memory_gib']:g}")
    return engine
