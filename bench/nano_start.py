"""Where nano's start goes: each phase, and each Triton compile inside it.

    python bench/nano_start.py --out $OUT [--max-num-seqs 256] [--runs 2] [--arch qwen2-1.5b]
                               [--options '{"prefill_graph_tokens": 0}']

Each run is a fresh process, as a sweep job is, and all runs share one new, empty Triton
cache: the first run pays what a fresh machine pays, the later ones what a machine that has
started nano once pays. A run builds the engine (load, KV profiling, graph capture, kernel
compile), then runs one short generate as the warm-up. Every Triton compile (or load from
the on-disk cache) is timed through Triton's JIT hooks and put in the phase it fell in.

Writes start.json and start.txt into --out and prints the text.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PHASES = ("load_s", "profile_s", "capture_s", "compile_s")  # the order LLM() runs them in


def child(model_dir: str, max_num_seqs: int, options: dict) -> dict:
    t_import = time.perf_counter()
    import torch
    import triton

    from engine.nano.llm import LLM
    from engine.nano.sampling import SamplingParams

    compiles: list[dict] = []
    started: dict[int, float] = {}

    def before(*, key, fn, **_):
        started[id(key)] = time.perf_counter()
        return None  # go on and compile

    def after(*, key, fn, **_):
        t1 = time.perf_counter()
        compiles.append({"kernel": fn.name, "at": t1, "s": t1 - started.pop(id(key), t1)})

    runtime = triton.knobs.runtime
    runtime.jit_cache_hook, runtime.jit_post_compile_hook = before, after
    torch.cuda.init()
    t0 = time.perf_counter()
    llm = LLM(model_dir, max_num_seqs=max_num_seqs, **options)
    t_built = time.perf_counter()
    params = SamplingParams(temperature=0.6, max_tokens=16, ignore_eos=True)
    llm.generate([[i % 100 + 1] * 64 for i in range(max_num_seqs)], params)
    torch.cuda.synchronize()
    t_warm = time.perf_counter()

    timings = {k: llm.timings.get(k, 0.0) for k in PHASES} | {"warmup_s": t_warm - t_built}
    edges, acc = [], t0
    for k in PHASES:
        acc += timings[k]
        edges.append((k, acc))
    edges.append(("warmup_s", t_warm))
    for c in compiles:
        c["phase"] = next((k for k, end in edges if c["at"] <= end + 1e-3), "warmup_s")
        c["at"] -= t0
    return {"timings": timings, "start_s": t_warm - t0, "import_s": t0 - t_import,
            "unaccounted_s": t_built - t0 - sum(timings[k] for k in PHASES),
            "compiles": compiles}


def report(runs: list[dict]) -> str:
    lines = []
    for i, r in enumerate(runs):
        t = r["timings"]
        cold = "cold Triton cache" if i == 0 else "warm Triton cache"
        lines.append(f"run {i + 1} ({cold}): start {r['start_s']:.2f} s = "
                     + ", ".join(f"{k[:-2]} {v:.2f}" for k, v in t.items())
                     + f" (+{r['unaccounted_s']:.2f} between phases)")
        by_phase: dict[str, list[dict]] = {}
        for c in r["compiles"]:
            by_phase.setdefault(c["phase"], []).append(c)
        for phase, cs in by_phase.items():
            total = sum(c["s"] for c in cs)
            names = ", ".join(f"{c['kernel']} {c['s']:.2f}" for c in cs)
            lines.append(f"  {phase[:-2]}: {len(cs)} Triton compiles/loads, {total:.2f} s "
                         f"of {t[phase]:.2f}: {names}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--arch", default="qwen2-1.5b")
    ap.add_argument("--max-num-seqs", type=int, default=256)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--options", default="{}", help="nano options, as JSON")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.max_num_seqs, json.loads(args.options))))
        return

    from engine.checkpoints import write_checkpoint

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model_dir = Path(tempfile.gettempdir()) / f"nano-start-{args.arch}"
    if not (model_dir / "config.json").is_file():
        write_checkpoint(args.arch, model_dir, seed=0, dtype="bfloat16")
    env = dict(os.environ, TRITON_CACHE_DIR=tempfile.mkdtemp(prefix="triton-cache-"))
    runs = []
    for _ in range(args.runs):
        p = subprocess.run(
            [sys.executable, __file__, "--out", str(out), "--child", str(model_dir),
             "--max-num-seqs", str(args.max_num_seqs), "--options", args.options],
            env=env, capture_output=True, text=True, check=False,
        )
        if p.returncode:
            sys.exit(f"nano_start: a run failed:\n{p.stderr[-3000:]}")
        runs.append(json.loads(p.stdout.strip().splitlines()[-1]))
    text = report(runs)
    (out / "start.json").write_text(json.dumps(runs, indent=1))
    (out / "start.txt").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
