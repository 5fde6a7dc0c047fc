"""nano against vLLM on one GPU: the standard workload on a random-weight Qwen2-1.5B, each
run a fresh `python -m engine.bench` process started by run_job_process exactly as a sweep job is
(own process group, GPU hygiene before and after), at max_num_seqs 256, 128 and 64.

    python bench/engine_vs_vllm.py --out $OUT [--engines vllm,nano] [--max-num-seqs 256,128]
        [--kv-cache-tokens auto,200000,100000] [--card-memory-gib 24] [--arch qwen2-7b]
        [--nano-options '{}' --nano-options '{"block_size": 64}']

--kv-cache-tokens and --card-memory-gib reproduce a smaller card's budget (the options of
engine/memory_budget.py, which both engines honour): each KV budget repeats the whole plan
("auto": the engine's own sizing). Each --nano-options is one nano variant.

Order: vllm at the first max_num_seqs (its torch.compile cache cold), nano at each, then
vllm at the first again (cache warm: the start-time saving), then vllm at the others.
vLLM's compile cache key includes the CUDA-graph capture sizes, which follow max_num_seqs,
so the first start at each other max_num_seqs compiles again (cold). A run that would not
end inside --budget-s (the device allows 10 minutes a call) is skipped, not started.

Writes each run's BenchResult (or Outcome on failure) as JSON into --out, prints a row as
each run ends and the whole table at the end (also --out/table.txt).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine import checkpoints, variants  # noqa: E402
from engine.job import DEFAULT_GPU_MEMORY_UTILIZATION, BenchJob, ModelRef  # noqa: E402
from engine.workload import WorkloadSpec  # noqa: E402
from orchestrator.executors.process import run_job_process  # noqa: E402

# Seconds a run takes on an H100/H200, its process start included, to decide what still fits.
ESTIMATE_S = {("vllm", "cold"): 80.0, ("vllm", "warm"): 45.0, ("nano", "any"): 30.0}
REFERENCE = "vLLM 0.26 on an H100 at max_num_seqs 256: 20.8-22.2k output tok/s"
COLUMNS = ("engine", "max_num_seqs", "output tok/s", "elapsed s", "output tokens", "start s",
           "load", "profile", "compile", "capture", "warmup", "compile cache", "KV tokens",
           "preempted", "prefill tokens", "decode batch", "peak GiB")


def plan(engines: list[str], sizes: list[int], warm_rerun: bool) -> list[tuple[str, int]]:
    runs = []
    if "vllm" in engines:
        runs.append(("vllm", sizes[0]))
    if "nano" in engines:
        runs += [("nano", n) for n in sizes]
    if "vllm" in engines:
        if warm_rerun:
            runs.append(("vllm", sizes[0]))
        runs += [("vllm", n) for n in sizes[1:]]
    return runs


def label(engine: str, options: dict) -> str:
    return engine + (json.dumps(options, separators=(",", ":")) if options else "")


def estimate(engine: str, n: int, done: list[tuple[str, int]]) -> float:
    if engine != "vllm":
        return ESTIMATE_S[("nano", "any")]
    return ESTIMATE_S[("vllm", "warm" if ("vllm", n) in done else "cold")]


def row(engine: str, n: int, outcome: dict) -> list[str]:
    r = outcome.get("result")
    if r is None:
        return [engine, str(n), f"{outcome['outcome']}: {outcome.get('error_kind')}: "
                                f"{(outcome.get('error') or '')[:120]}"]
    warm = r.get("compile_cache_warm")
    peak = r.get("peak_memory_bytes")
    return [engine, str(n), f"{r['output_tok_s']:,.0f}", f"{r['elapsed_s']:.2f}",
            f"{r['output_tokens']:,}", f"{r['start_s']:.1f}",
            *(f"{r[k]:.1f}" for k in ("load_s", "profile_s", "compile_s", "capture_s",
                                      "warmup_s")),
            "" if warm is None else ("warm" if warm else "cold"),
            *(f"{r[k]:,}" if r.get(k) is not None else "" for k in ("kv_tokens", "preemptions",
                                                                    "prefill_tokens")),
            f"{r['output_tokens'] / r['decode_steps']:.0f}" if r.get("decode_steps") else "",
            f"{peak / 2**30:.1f}" if peak else ""]


def table(rows: list[list[str]]) -> str:
    full = [r for r in rows if len(r) == len(COLUMNS)]
    widths = [max(len(c), *(len(r[i]) for r in full)) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(COLUMNS, widths, strict=True))]
    for r in rows:
        if len(r) == len(COLUMNS):
            lines.append("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))
        else:  # a run that failed or was skipped: its message in full
            lines.append("  ".join(r))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, type=Path, help="directory for the result JSONs")
    p.add_argument("--engines", default="vllm,nano")
    p.add_argument("--max-num-seqs", default="256,128,64")
    p.add_argument("--gpu-memory-utilization", type=float,
                   default=DEFAULT_GPU_MEMORY_UTILIZATION)
    p.add_argument("--arch", default="qwen2-1.5b")
    p.add_argument("--num-seqs", type=int, default=None,
                   help="fewer requests than the standard 256 (a smoke test)")
    p.add_argument("--no-warm-rerun", action="store_true",
                   help="skip the second vllm run at the first max_num_seqs")
    p.add_argument("--kv-cache-tokens", default="auto",
                   help="KV budgets in tokens, comma-separated; auto: the engine's own sizing")
    p.add_argument("--card-memory-gib", type=float, default=None,
                   help="size every engine's memory as on a card of this many GiB")
    p.add_argument("--nano-options", action="append", type=json.loads, default=None,
                   help="a nano variant's options as JSON (repeat for several variants)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds a run may take")
    p.add_argument("--budget-s", type=float, default=540.0,
                   help="start no run that would end after this many seconds")
    a = p.parse_args(argv)
    started = time.monotonic()
    engines = [e.strip() for e in a.engines.split(",") if e.strip()]
    sizes = [int(n) for n in a.max_num_seqs.split(",")]
    if not engines or set(engines) - {"vllm", "nano"}:
        p.error("--engines takes vllm and/or nano")
    a.out.mkdir(parents=True, exist_ok=True)
    os.chdir(ROOT)  # run_job_process starts `python -m engine.bench` in the current directory
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    gpu = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]

    model = ModelRef(arch=a.arch)
    workload = WorkloadSpec(num_seqs=a.num_seqs) if a.num_seqs else WorkloadSpec()
    t0 = time.monotonic()
    path = checkpoints.resolve(model)
    print(f"checkpoint {path} ready in {time.monotonic() - t0:.1f} s; {REFERENCE}", flush=True)

    budgets = [None if b.strip() == "auto" else int(b) for b in a.kv_cache_tokens.split(",")]
    card = {} if a.card_memory_gib is None else {"card_memory_gib": a.card_memory_gib}
    runs = [(engine, n, card | ({} if kv is None else {"kv_cache_tokens": kv}) | extra)
            for k, kv in enumerate(budgets)
            for engine, n in plan(engines, sizes, not a.no_warm_rerun and k == 0)
            for extra in (a.nano_options or [{}] if engine == "nano" else [{}])]
    rows, done = [], []
    for i, (engine, n, options) in enumerate(runs):
        name = label(engine, options)
        left = a.budget_s - (time.monotonic() - started)
        if estimate(engine, n, done) > left:
            print(f"skipped {name} at max_num_seqs {n}: {left:.0f} s of the budget left",
                  flush=True)
            rows.append([name, str(n), "skipped (time budget)"])
            continue
        job = BenchJob(engine=engine, variant=engine, model=model, workload=workload,
                       max_num_seqs=n, gpu_memory_utilization=a.gpu_memory_utilization,
                       options=variants.kind(engine).normalize(options))
        t0 = time.monotonic()
        (outcome,) = run_job_process([job.to_json()], gpu=gpu, cuda_visible_devices=gpu,
                                     timeout_s=a.timeout)
        outcome = outcome.to_dict()
        done.append((engine, n))
        engine = name
        name = f"{i:02d}-{re.sub(r'[^A-Za-z0-9_.=-]+', '_', engine)}-{n}"
        (a.out / f"{name}.json").write_text(json.dumps(outcome.get("result") or outcome,
                                                      indent=1, sort_keys=True))
        if outcome["outcome"] != "succeeded":
            (a.out / f"{name}.log").write_text(outcome.get("log_tail") or "")
        rows.append(row(engine, n, outcome))
        print(f"[{time.monotonic() - started:5.0f} s] {engine} max_num_seqs={n}: "
              f"{'  '.join(rows[-1][2:])}  (run {time.monotonic() - t0:.0f} s)", flush=True)

    gpus = (json.loads(f.read_text()).get("env", {}).get("gpu")
            for f in sorted(a.out.glob("[0-9]*.json")))
    gpu_info = next((g for g in gpus if g), None)
    budget = f"gpu_memory_utilization {a.gpu_memory_utilization:g}" + (
        f" of card_memory_gib {a.card_memory_gib:g}" if card else "")
    text = (f"{a.arch}, standard workload, {budget}, GPU {json.dumps(gpu_info)}\n"
            f"{table(rows)}\n"
            f"reference: {REFERENCE}; total {time.monotonic() - started:.0f} s\n")
    (a.out / "table.txt").write_text(text)
    print(text, flush=True)
    return 0 if all(len(r) > 3 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
