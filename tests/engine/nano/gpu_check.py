"""Device check of nano (not a pytest module): bf16 logits and greedy tokens against
transformers, then the standard workload through engine.bench at several max_num_seqs and
gpu_memory_utilization values. Writes JSON lines to --out as it goes.

    python -m tests.engine.nano.gpu_check --arch qwen2-1.5b --out $OUT/check.jsonl
    python -m tests.engine.nano.gpu_check --arch tiny --num-seqs 8 --budget-s 60   (CPU try)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch


def log(out: Path, **rec) -> None:
    line = json.dumps(rec, sort_keys=True)
    print(line, flush=True)
    with out.open("a") as f:
        f.write(line + "\n")


def checkpoint(arch: str, dtype: str) -> str:
    from engine.checkpoints import write_checkpoint

    d = Path(f"/tmp/nano-check/{arch}-{dtype}")
    if not (d / "config.json").is_file():
        write_checkpoint(arch, d, seed=0, dtype=dtype)
    return str(d)


def nano_greedy(model_dir: str, backend: str, prompts, n_tok: int, out: Path, **options):
    """nano's greedy tokens and the logits of every step, per prompt (options: more of
    LLM's). Everything the engine holds is freed on return, so the next engine sees the
    memory free."""
    from engine.nano import LLM, SamplingParams

    t0 = time.monotonic()
    llm = LLM(model_dir, max_num_seqs=8, gpu_memory_utilization=0.3, max_model_len=1024,
              attention_backend=backend, block_size=16, **options)
    start_s = time.monotonic() - t0
    model, runner = llm.runner.model, llm.runner
    rows: list[torch.Tensor] = []
    per_seq: dict[int, list[torch.Tensor]] = {}
    orig_logits, orig_launch = model.compute_logits, runner.launch

    def compute(h):
        x = orig_logits(h)
        rows.append(x.float().cpu())
        return x

    def launch(batch, prev=None):
        seqs = [s for i, s in enumerate(batch.seqs) if batch.samples(i)]
        n0 = len(rows)
        toks = orig_launch(batch, prev)
        if len(rows) > n0:
            for s, r in zip(seqs, rows[-1], strict=True):
                per_seq.setdefault(s.seq_id, []).append(r)
        return toks

    model.compute_logits, runner.launch = compute, launch
    toks = llm.generate(prompts, SamplingParams(0, n_tok, True))
    log(out, phase="nano", backend=backend, options=options, start_s=round(start_s, 2),
        timings=llm.timings, kv_blocks=llm.num_kv_blocks)
    return toks, [torch.stack(per_seq[i]) for i in sorted(per_seq)]


def _first_diff(a: list[int], b: list[int]) -> int | None:
    return next((j for j, (x, y) in enumerate(zip(a, b, strict=True)) if x != y), None)


def logits_check(model_dir: str, device: str, dtype: torch.dtype, out: Path, n_tok: int) -> None:
    import gc

    from transformers import AutoModelForCausalLM

    g = torch.Generator().manual_seed(0)
    lens = [7, 20, 64, 100, 150, 257, 300, 513]
    prompts = [torch.randint(0, 10000, (n,), generator=g).tolist() for n in lens]
    results = {}
    runs = ((("triton", "token"), ("torch", "token"), ("triton", "head"), ("torch", "head"))
            if device == "cuda" else (("torch", "token"), ("torch", "head")))
    for backend, layout in runs:
        name = backend if layout == "token" else f"{backend}-kv-head"
        results[name] = nano_greedy(model_dir, backend, prompts, n_tok, out, kv_layout=layout)
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()

    hf = {}
    for name, dt in (("hf", dtype), ("hf32", torch.float32)):
        hf[name] = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dt).to(device).eval()
    toks, nano_logits = results["triton" if device == "cuda" else "torch"]
    for i, p in enumerate(prompts):
        full = torch.tensor([p + toks[i][:-1]], device=device)
        with torch.inference_mode():
            ref = {k: m(full).logits[0, len(p) - 1 :].float().cpu() for k, m in hf.items()}
            gen, gen32 = (m.generate(torch.tensor([p], device=device), max_new_tokens=n_tok,
                                     min_new_tokens=n_tok, do_sample=False, eos_token_id=None,
                                     pad_token_id=0)[0, len(p):].tolist()
                          for m in (hf["hf"], hf["hf32"]))
        mine = nano_logits[i]
        first_diff = _first_diff(gen, toks[i])
        rec = dict(
            phase="logits", prompt_len=len(p),
            logit_absmax=round(ref["hf32"].abs().max().item(), 4),
            nano_vs_hf32=round((mine - ref["hf32"]).abs().max().item(), 5),
            hfbf16_vs_hf32=round((ref["hf"] - ref["hf32"]).abs().max().item(), 5),
            nano_vs_hfbf16=round((mine - ref["hf"]).abs().max().item(), 5),
            greedy_match=first_diff is None, first_diff=first_diff,
            # how soon bf16 alone turns transformers' greedy path away from its fp32 one
            hfbf16_first_diff_vs_hf32=_first_diff(gen, gen32),
        )
        if "torch" in results and device == "cuda":
            other_toks, other = results["torch"][0][i], results["torch"][1][i]
            split = _first_diff(other_toks, toks[i])
            same = n_tok if split is None else split + 1  # steps with the same context
            rec["triton_vs_torch"] = round((mine[:same] - other[:same]).abs().max().item(), 5)
            rec["torch_backend_first_diff"] = split
        # kv_layout head against the default layout, on each backend: within bf16's error.
        for backend in ("triton", "torch") if device == "cuda" else ("torch",):
            base_toks, base = (r[i] for r in results[backend])
            head_toks, head = (r[i] for r in results[f"{backend}-kv-head"])
            split = _first_diff(head_toks, base_toks)
            same = n_tok if split is None else split + 1
            rec[f"{backend}_kv_head_vs_token"] = round(
                (head[:same] - base[:same]).abs().max().item(), 5)
            rec[f"{backend}_kv_head_first_diff"] = split
        log(out, **rec)
    del hf


def async_check(model_dir: str, out: Path, num_seqs: int = 64, n_tok: int = 96) -> None:
    """Greedy tokens of the standard workload's first prompts with decode steps queued
    ahead of the host (async_scheduling) and without: the same batches, so the same tokens;
    and with a sampled token made an end token, the same ends."""
    import gc

    from engine.nano import LLM, SamplingParams
    from engine.workload import WorkloadSpec, build

    prompts = build(WorkloadSpec(num_seqs=num_seqs)).prompts
    outs = {}
    for a in (True, False):
        for eos in (False, True):
            llm = LLM(model_dir, max_num_seqs=32, gpu_memory_utilization=0.3,
                      async_scheduling=a)
            if eos:  # a token the sync run samples at step 5 of its first sequence
                llm.scheduler.eos_token_ids = {outs[(True, False)][0][5]}
            t0 = time.monotonic()
            outs[(a, eos)] = llm.generate(prompts, SamplingParams(0, n_tok, not eos))
            log(out, phase="async", async_scheduling=a, eos=eos,
                s=round(time.monotonic() - t0, 2),
                lens=sorted({len(o) for o in outs[(a, eos)]})[:8])
            del llm
            gc.collect()
            torch.cuda.empty_cache()
    for eos in (False, True):
        same = sum(x == y for x, y in zip(outs[(True, eos)], outs[(False, eos)], strict=True))
        log(out, phase="async-vs-sync", eos=eos, identical=f"{same}/{num_seqs}")


def prefill_graph_check(model_dir: str, out: Path, num_seqs: int = 64, n_tok: int = 96) -> None:
    """Greedy tokens with the prefill steps of sequences admitted mid-run (max_num_seqs 32,
    64 prompts) replaying CUDA graphs and run eagerly. A graph pads the step's tokens, and
    cuBLAS may pick another kernel for the padded shape, so bf16 rounding can differ: report
    how many sequences agree and where the others first part."""
    import gc

    from engine.nano import LLM, SamplingParams
    from engine.workload import WorkloadSpec, build

    prompts = build(WorkloadSpec(num_seqs=num_seqs)).prompts
    outs = []
    for tokens in (2048, 0):
        llm = LLM(model_dir, max_num_seqs=32, gpu_memory_utilization=0.3,
                  prefill_graph_tokens=tokens)
        outs.append(llm.generate(prompts, SamplingParams(0, n_tok, True)))
        del llm
        gc.collect()
        torch.cuda.empty_cache()
    parts = [_first_diff(a, b) for a, b in zip(*outs, strict=True)]
    log(out, phase="prefill-graphs-vs-eager", identical=f"{parts.count(None)}/{num_seqs}",
        first_diff=sorted(p for p in parts if p is not None))


def bench(model_dir: str, num_seqs: int, ms: int, util: float, out: Path, timeout: float,
          extra: dict) -> None:
    from engine.job import BenchJob, ModelRef
    from engine.workload import WorkloadSpec

    job = BenchJob(engine="nano", variant="nano", model=ModelRef(path=model_dir),
                   workload=WorkloadSpec(num_seqs=num_seqs), max_num_seqs=ms,
                   gpu_memory_utilization=util, options=extra)
    t0 = time.monotonic()
    try:
        p = subprocess.run([sys.executable, "-m", "engine.bench", "--job", "-", "--out",
                            "/tmp/nano-check/result.json"], input=job.to_json(), text=True,
                           capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        log(out, phase="bench", max_num_seqs=ms, util=util, error="timeout")
        return
    wall = time.monotonic() - t0
    try:
        r = json.loads(p.stdout.strip().splitlines()[-1])
    except Exception:
        log(out, phase="bench", max_num_seqs=ms, util=util, error=p.stderr[-3000:])
        return
    keep = ("output_tokens", "requested_output_tokens", "elapsed_s", "output_tok_s",
            "load_s", "profile_s", "capture_s", "compile_s", "warmup_s", "start_s", "prefill_s",
            "decode_s", "kv_blocks", "kv_tokens", "peak_memory_bytes", "error")
    log(out, phase="bench", max_num_seqs=ms, util=util, wall_s=round(wall, 1), options=extra,
        **{k: r.get(k) for k in keep}, stderr_tail=p.stderr[-800:] if "error" in r else "")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="qwen2-1.5b")
    ap.add_argument("--out", default="/tmp/nano-check/check.jsonl")
    ap.add_argument("--num-seqs", type=int, default=256)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--budget-s", type=float, default=300)
    ap.add_argument("--skip-logits", action="store_true")
    ap.add_argument("--skip-bench", action="store_true")
    ap.add_argument("--runs", default="all", help="comma list of bench runs by index, or all")
    args = ap.parse_args()
    t_end = time.monotonic() + args.budget_s
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    t0 = time.monotonic()
    d = checkpoint(args.arch, "bfloat16" if device == "cuda" else "float32")
    log(out, phase="checkpoint", s=round(time.monotonic() - t0, 1), device=device,
        torch=torch.__version__, cuda_name=torch.cuda.get_device_name() if device == "cuda" else "")
    if not args.skip_logits:
        t0 = time.monotonic()
        try:
            logits_check(d, device, dtype, out, args.tokens)
        except Exception as e:  # keep going to the benchmarks
            import traceback

            log(out, phase="logits", error=traceback.format_exc()[-3000:], what=str(e))
        log(out, phase="logits-done", s=round(time.monotonic() - t0, 1))
    if device == "cuda":
        for check in (async_check, prefill_graph_check):
            try:
                check(d, out)
            except Exception:
                import traceback

                log(out, phase=check.__name__, error=traceback.format_exc()[-3000:])
    runs = [(256, 0.9, {}), (128, 0.9, {}), (64, 0.5, {}), (256, 0.5, {}), (64, 0.9, {}),
            (128, 0.5, {}), (256, 0.9, {"async_scheduling": False}),
            (256, 0.9, {"enforce_eager": True}), (256, 0.9, {"kv_layout": "head"}),
            (128, 0.9, {"kv_layout": "head"}), (64, 0.9, {"kv_layout": "head"})]
    if args.runs != "all":
        runs = [runs[int(i)] for i in args.runs.split(",")]
    for ms, util, extra in [] if args.skip_bench else runs:
        left = t_end - time.monotonic()
        if left < 45:
            log(out, phase="bench", skipped=[ms, util, extra], reason="time budget")
            continue
        bench(d, args.num_seqs, ms, util, out, left - 10, extra)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
