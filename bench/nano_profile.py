"""Where a nano decode step's time goes, against the card's roofline.

    python bench/nano_profile.py --out $OUT [--max-num-seqs 256] [--arch qwen2-1.5b]

1. The card: copy bandwidth (a 4 GiB device-to-device copy) and bf16 matrix rate (8192^3).
2. The standard workload through LLM.generate, the loop a job runs (LLM._run_steps, async
   scheduling as configured), every step timed: the host's time for it split into
   schedule / prepare+launch / advance / wait (reading its tokens back) / complete, and the
   GPU time of the graph replay, the logits and the sampler (CUDA events). Host overhead =
   wall time - GPU busy time.
3. A window of full-batch decode steps replayed eagerly under torch.profiler: kernel time
   split into attention, GEMMs, norms, sampling and the rest.
4. The roofline: per decode step, bytes moved (weights + KV cache read) and FLOPs, against
   the measured bandwidth and matrix rate, summed over the run.

Writes profile.json and profile.txt into --out and prints the text.
"""

from __future__ import annotations

import argparse
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

    # LLM._run_steps runs unchanged; the scheduler and runner calls it makes are timed, each
    # against the record of the step (the Batch) it concerns.
    steps: list[dict] = []
    prof: dict = {"decode": None, "prefill": None, "s": 0.0}  # profiles; the time they took
    cuda = torch.cuda.is_available()
    schedule, launch = sched.schedule, runner.launch
    advance, complete = sched.advance, sched.complete

    def timed_schedule():
        t = time.perf_counter()
        batch = schedule()
        batch.profile = rec = {
            "prefill": batch.is_prefill, "seqs": len(batch.seqs), "tokens": batch.num_tokens,
            "ctx": sum(len(s) for s in batch.seqs), "schedule_s": time.perf_counter() - t,
            "launch_s": 0.0, "advance_s": 0.0, "wait_s": 0.0, "complete_s": 0.0}
        steps.append(rec)
        return batch

    def timed_launch(batch, prev=None):
        rec = batch.profile
        t = time.perf_counter()
        full = not batch.is_prefill and len(batch.seqs) == a.max_num_seqs
        if prof["decode"] is None and full and cuda and len(steps) >= 40:
            prof["decode"] = profile_eager(runner, launch, batch, prev)
        if prof["prefill"] is None and batch.is_prefill and cuda:
            prof["prefill"] = profile_eager(runner, launch, batch, prev)
        t1 = time.perf_counter()
        prof["s"] += t1 - t
        log.clear()
        tokens = launch(batch, prev)
        rec["launch_s"] = time.perf_counter() - t1
        rec["events"] = list(log)
        read = tokens.tolist

        def timed_tolist():  # the host waits here for the step to finish
            t = time.perf_counter()
            out = read()
            rec["wait_s"] += time.perf_counter() - t
            return out

        tokens.tolist = timed_tolist
        return tokens

    def timed(fn, key):
        def wrapper(batch, *args):
            t = time.perf_counter()
            out = fn(batch, *args)
            batch.profile[key] += time.perf_counter() - t
            return out
        return wrapper

    sched.schedule, runner.launch = timed_schedule, timed_launch
    sched.advance, sched.complete = timed(advance, "advance_s"), timed(complete, "complete_s")
    params = [SamplingParams(temperature=w.spec.temperature, max_tokens=n, ignore_eos=True)
              for n in w.max_tokens]
    t_run = time.perf_counter()
    llm.generate(w.prompts, params)
    total_s = time.perf_counter() - t_run - prof["s"]
    if cuda:
        torch.cuda.synchronize()
    for rec in steps:  # every step's events have completed: read their GPU times
        gpu: dict[str, float] = defaultdict(float)
        for label, s, e in rec.pop("events", []):
            gpu[label] += s.elapsed_time(e) / 1e3
        rec.update({f"gpu_{k}_s": v for k, v in gpu.items()})
    return {"card": card, "arch": a.arch, "max_num_seqs": a.max_num_seqs,
            "async_scheduling": llm.config.async_scheduling,
            "start_s": start_s, "timings": llm.timings, "sizes": sizes, "total_s": total_s,
            "engine_stats": llm.last_stats,
            "output_tokens": sum(w.max_tokens), "steps": steps, "eager_profile": prof["decode"],
            "prefill_profile": prof["prefill"]}


def profile_eager(runner, launch, batch, prev) -> dict:
    """Run this step eagerly under the profiler a few times, before the real one (the KV
    slots it writes are rewritten, with the same values, by the real step; its samples
    draw on the sampler's generator) and split kernel time by category."""
    from torch.profiler import ProfilerActivity, profile

    timed, runner.graphs = runner.graphs, {}
    timed_prefill, runner.prefill_graphs = runner.prefill_graphs, {}
    reps = 5
    try:
        launch(batch, prev).tolist()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(reps):
                launch(batch, prev).tolist()
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


# The host's time for one step, in the order _run_steps spends it; wait is the time it
# blocks reading the step's tokens back.
HOST_PARTS = ("schedule", "launch", "advance", "wait", "complete")


def summarize(r: dict) -> str:
    card, sz, steps = r["card"], r["sizes"], r["steps"]
    bw, fl = card["copy_bytes_per_s"], card["bf16_flops_per_s"]
    dec = [s for s in steps if not s["prefill"]]
    pre = [s for s in steps if s["prefill"]]

    def total(rows, key):
        return sum(s.get(key, 0.0) for s in rows)

    lines = [f"card {card['name']}: copy {bw / 1e12:.2f} TB/s, bf16 matmul {fl / 1e12:.0f} "
             f"TFLOP/s; {r['arch']}, max_num_seqs {r['max_num_seqs']}, async scheduling "
             f"{'on' if r['async_scheduling'] else 'off'}",
             f"run {r['total_s']:.2f} s for {r['output_tokens']:,} output tokens "
             f"({r['output_tokens'] / r['total_s']:,.0f} tok/s); start {r['start_s']:.1f} s "
             f"{ {k: round(v, 2) for k, v in r['timings'].items()} }"]
    floor_total = 0.0
    for name, rows in (("decode", dec), ("prefill", pre)):
        if not rows:
            continue
        wall = sum(total(rows, f"{k}_s") for k in HOST_PARTS)
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
            f"{name}: {len(rows)} steps, host {wall:.3f} s ({1e3 * wall / len(rows):.2f} ms/step)"
            " = " + " + ".join(f"{k} {total(rows, f'{k}_s'):.3f}" for k in HOST_PARTS),
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
