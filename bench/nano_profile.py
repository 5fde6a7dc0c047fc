"""Where a nano decode step's time goes, against the card's roofline.

    python bench/nano_profile.py --out $OUT [--max-num-seqs 256] [--arch qwen2-1.5b]

1. The card: copy bandwidth (a 4 GiB device-to-device copy) and bf16 matrix rate (8192^3).
2. The standard workload on nano with CUDA graphs, every step timed: host wall time split into
   schedule / prepare+launch / wait / postprocess, and the GPU time of the graph replay, the
   logits and the sampler (CUDA events). Host overhead = step wall time - GPU busy time.
3. A window of full-batch decode steps replayed eagerly under torch.profiler: kernel time
   split into attention, GEMMs, norms, sampling and the rest.
4. The roofline: per decode step, bytes moved (weights + KV cache read) and FLOPs, against
   the measured bandwidth and matrix rate, summed over the run.

Writes profile.json and profile.txt into --out and prints the text.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from engine import checkpoints  # noqa: E402
from engine.job import DEFAULT_GPU_MEMORY_UTILIZATION, ModelRef  # noqa: E402
from engine.nano.llm import LLM  # noqa: E402
from engine.nano.sampling import SamplingParams  # noqa: E402
from engine.nano.sequence import Sequence  # noqa: E402
from engine.workload import WorkloadSpec, build  # noqa: E402

CATEGORIES = (  # first match wins, on the lower-cased kernel name
    ("attention", ("_decode_", "_prefill_kernel", "attention", "flash")),
    ("kv_store", ("store_kv",)),
    ("gemm", ("gemm", "cutlass", "xmma", "nvjet", "sm90", "sm80", "matmul", "splitk")),
    ("norm", ("rmsnorm", "rms_norm")),
    ("sampling", ("argmax", "softmax", "exponential", "distribution", "reduce", "where")),
)


def category(name: str) -> str:
    low = name.lower()
    return next((c for c, keys in CATEGORIES if any(k in low for k in keys)), "other")


def measure_card() -> dict:
    if not torch.cuda.is_available():  # a smoke test of this script on a CPU
        return {"name": "cpu", "copy_bytes_per_s": 1e10, "bf16_flops_per_s": 1e11}
    dev = torch.device("cuda")
    n = 1 << 31  # 4 GiB of bf16
    src = torch.empty(n, dtype=torch.bfloat16, device=dev)
    dst = torch.empty_like(src)
    dst.copy_(src)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(10):
        dst.copy_(src)
    torch.cuda.synchronize()
    bw = 10 * 2 * src.numel() * 2 / (time.perf_counter() - t)  # read + write
    del src, dst
    a = torch.randn(8192, 8192, dtype=torch.bfloat16, device=dev)
    b = torch.randn_like(a)
    a @ b
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(20):
        a @ b
    torch.cuda.synchronize()
    flops = 20 * 2 * 8192**3 / (time.perf_counter() - t)
    del a, b
    torch.cuda.empty_cache()
    return {"name": torch.cuda.get_device_name(), "copy_bytes_per_s": bw,
            "bf16_flops_per_s": flops}


class _CpuEvent:
    """torch.cuda.Event's timing API on the host clock, for a smoke test on a CPU."""

    def __init__(self, enable_timing: bool = True) -> None:
        self.t = 0.0

    def record(self) -> None:
        self.t = time.perf_counter()

    def elapsed_time(self, end: _CpuEvent) -> float:
        return 1e3 * (end.t - self.t)


Event = torch.cuda.Event if torch.cuda.is_available() else _CpuEvent


class _TimedGraph:
    """Stands in for a captured CUDAGraph: replays it between two CUDA events."""

    def __init__(self, graph, log):
        self.graph, self.log = graph, log

    def replay(self):
        s, e = Event(enable_timing=True), Event(enable_timing=True)
        s.record()
        self.graph.replay()
        e.record()
        self.log.append(("forward", s, e))


def _timed(fn, label, log):
    def wrapper(*args, **kwargs):
        s, e = Event(enable_timing=True), Event(enable_timing=True)
        s.record()
        out = fn(*args, **kwargs)
        e.record()
        log.append((label, s, e))
        return out
    return wrapper


def model_sizes(llm: LLM) -> dict:
    m = llm.model_config
    params = sum(p.numel() for p in llm.runner.model.parameters())
    embed = m.vocab_size * m.hidden_size
    # A step's matmuls use every weight but the embedding table, which is only looked up,
    # unless it is tied and so also the LM head.
    matmul = params if m.tie_word_embeddings else params - embed
    return {
        "params": params,
        "weight_bytes": matmul * llm.runner.dtype.itemsize,
        "matmul_params": matmul,
        "kv_bytes_per_token": llm.runner.block_bytes // llm.config.block_size,
        "attn_flops_per_ctx_token": 4 * m.num_attention_heads * m.head_dim
        * m.num_hidden_layers,
    }


def run(a) -> dict:
    card = measure_card()
    path = checkpoints.resolve(ModelRef(arch=a.arch))
    t = time.perf_counter()
    llm = LLM(str(path), max_num_seqs=a.max_num_seqs,
              gpu_memory_utilization=a.gpu_memory_utilization)
    start_s = time.perf_counter() - t
    w = build(WorkloadSpec(num_seqs=a.num_seqs))
    sizes = model_sizes(llm)
    runner, sched = llm.runner, llm.scheduler
    log: list = []
    graphs = runner.graphs
    runner.graphs = {b: _TimedGraph(g, log) for b, g in graphs.items()}
    runner.prefill_graphs = {t: _TimedGraph(g, log) for t, g in runner.prefill_graphs.items()}
    runner.model.compute_logits = _timed(runner.model.compute_logits, "logits", log)
    runner.sampler = _timed(runner.sampler, "sampler", log)
    # Called only by eager steps (prefill, or decode without a graph): graph replays log
    # their own forward.
    runner.model.forward = _timed(runner.model.forward, "forward", log)

    for p, n in zip(w.prompts, w.max_tokens, strict=True):
        sched.add(Sequence(p, SamplingParams(temperature=w.spec.temperature, max_tokens=n,
                                             ignore_eos=True), llm.config.block_size))
    steps, profiled, prefill_profiled = [], None, None
    profiling_s = 0.0  # spent in the eager profiles, left out of every figure
    gc.disable()  # as LLM.generate does
    t_run = time.perf_counter()
    while not sched.is_finished():
        t0 = time.perf_counter()
        batch = sched.schedule()
        t1 = time.perf_counter()
        full = not batch.is_prefill and len(batch.seqs) == a.max_num_seqs
        cuda = torch.cuda.is_available()
        if profiled is None and full and cuda and len(steps) >= 40:
            profiled = profile_eager(runner, batch, graphs)
        if prefill_profiled is None and batch.is_prefill and cuda:
            prefill_profiled = profile_eager(runner, batch, graphs)
        t1b = time.perf_counter()
        profiling_s += t1b - t1
        log.clear()
        tokens = runner.run(batch)
        t2 = time.perf_counter()
        sched.postprocess(batch, tokens)
        t3 = time.perf_counter()
        gpu = defaultdict(float)
        for label, s, e in log:
            gpu[label] += s.elapsed_time(e) / 1e3
        steps.append({
            "prefill": batch.is_prefill, "seqs": len(batch.seqs), "tokens": batch.num_tokens,
            "ctx": sum(len(s) for s in batch.seqs), "schedule_s": t1 - t0, "run_s": t2 - t1b,
            "postprocess_s": t3 - t2, **{f"gpu_{k}_s": v for k, v in gpu.items()},
        })
    total_s = time.perf_counter() - t_run - profiling_s
    gc.enable()
    return {"card": card, "arch": a.arch, "max_num_seqs": a.max_num_seqs,
            "start_s": start_s, "timings": llm.timings, "sizes": sizes, "total_s": total_s,
            "output_tokens": sum(w.max_tokens), "steps": steps, "eager_profile": profiled,
            "prefill_profile": prefill_profiled}


def profile_eager(runner, batch, graphs) -> dict:
    """Run this batch eagerly under the profiler a few times (the KV slots it writes are
    rewritten, with the same values, by the real step that follows) and split kernel time by
    category."""
    from torch.profiler import ProfilerActivity, profile

    timed, runner.graphs = runner.graphs, {}
    timed_prefill, runner.prefill_graphs = runner.prefill_graphs, {}
    reps = 5
    try:
        runner.run(batch)
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(reps):
                runner.run(batch)
    finally:
        runner.graphs, runner.prefill_graphs = timed, timed_prefill
    by_cat: dict[str, float] = defaultdict(float)
    top: dict[str, float] = defaultdict(float)
    for ev in prof.key_averages():
        us = getattr(ev, "device_time_total", None) or getattr(ev, "cuda_time_total", 0)
        if us and ev.key and not ev.key.startswith(("ProfilerStep", "aten::", "cuda")):
            by_cat[category(ev.key)] += us / reps / 1e3
            top[ev.key] += us / reps / 1e3
    return {"seqs": len(batch.seqs), "tokens": batch.num_tokens,
            "ctx": sum(len(s) for s in batch.seqs),
            "ms_per_step": dict(by_cat),
            "top_kernels_ms": dict(sorted(top.items(), key=lambda kv: -kv[1])[:15])}


def summarize(r: dict) -> str:
    card, sz, steps = r["card"], r["sizes"], r["steps"]
    bw, fl = card["copy_bytes_per_s"], card["bf16_flops_per_s"]
    dec = [s for s in steps if not s["prefill"]]
    pre = [s for s in steps if s["prefill"]]

    def total(rows, key):
        return sum(s.get(key, 0.0) for s in rows)

    lines = [f"card {card['name']}: copy {bw / 1e12:.2f} TB/s, bf16 matmul {fl / 1e12:.0f} "
             f"TFLOP/s; {r['arch']}, max_num_seqs {r['max_num_seqs']}",
             f"run {r['total_s']:.2f} s for {r['output_tokens']:,} output tokens "
             f"({r['output_tokens'] / r['total_s']:,.0f} tok/s); start {r['start_s']:.1f} s "
             f"{ {k: round(v, 2) for k, v in r['timings'].items()} }"]
    floor_total = 0.0
    for name, rows in (("decode", dec), ("prefill", pre)):
        if not rows:
            continue
        wall = total(rows, "schedule_s") + total(rows, "run_s") + total(rows, "postprocess_s")
        gpu = total(rows, "gpu_forward_s") + total(rows, "gpu_logits_s") + \
            total(rows, "gpu_sampler_s")
        byte = flop = floor = 0.0
        for s in rows:
            b = sz["weight_bytes"] + s["ctx"] * sz["kv_bytes_per_token"]
            # Decode attention reads the whole context; prefill attention FLOPs are left out.
            f = 2 * s["tokens"] * sz["matmul_params"] + (
                0 if s["prefill"] else s["ctx"] * sz["attn_flops_per_ctx_token"])
            byte, flop, floor = byte + b, flop + f, floor + max(b / bw, f / fl)
        floor_total += floor
        lines += [
            f"{name}: {len(rows)} steps, wall {wall:.3f} s ({1e3 * wall / len(rows):.2f} ms/step)"
            f" = schedule {total(rows, 'schedule_s'):.3f} + run {total(rows, 'run_s'):.3f}"
            f" + postprocess {total(rows, 'postprocess_s'):.3f}",
            f"  GPU busy {gpu:.3f} s: forward {total(rows, 'gpu_forward_s'):.3f}, logits "
            f"{total(rows, 'gpu_logits_s'):.3f}, sampler {total(rows, 'gpu_sampler_s'):.3f};"
            f" host overhead (wall - GPU) {wall - gpu:.3f} s",
            f"  moved {byte / 1e9:.0f} GB, {flop / 1e12:.1f} TFLOP: roofline floor {floor:.3f} s"
            f" ({100 * floor / wall:.0f}% of wall)"]
        if name == "decode" and rows:
            forward = total(rows, "gpu_forward_s")
            lines.append(f"  forward GPU time vs its floor: {forward:.3f} s vs "
                         f"{floor:.3f} s")
    lines.append(f"whole run floor {floor_total:.2f} s vs measured {r['total_s']:.2f} s")
    for key, what in (("eager_profile", "eager decode step"), ("prefill_profile", "prefill step")):
        p = r.get(key)
        if not p:
            continue
        lines.append(f"{what}, {p['seqs']} seqs, {p.get('tokens', p['seqs']):,} new tokens, "
                     f"{p['ctx']:,} context tokens, kernel ms/step: "
                     + ", ".join(f"{k} {v:.3f}" for k, v in sorted(p["ms_per_step"].items(),
                                                                  key=lambda kv: -kv[1])))
        lines += [f"  {v:7.3f} ms  {k[:100]}" for k, v in p["top_kernels_ms"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--arch", default="qwen2-1.5b")
    p.add_argument("--max-num-seqs", type=int, default=256)
    p.add_argument("--gpu-memory-utilization", type=float,
                   default=DEFAULT_GPU_MEMORY_UTILIZATION)
    p.add_argument("--num-seqs", type=int, default=256, help="fewer for a smoke test")
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    r = run(a)
    text = summarize(r)
    (a.out / "profile.json").write_text(json.dumps(r, indent=1))
    (a.out / "profile.txt").write_text(text + "\n")
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
