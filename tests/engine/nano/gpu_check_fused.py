"""Device check of fuse_norm_linear (not a pytest module), in under 4 minutes on an H200.

1. Logits: a random Qwen2-1.5B whose RMSNorm weights are redrawn (engine/checkpoints.py
   leaves them at one, which would make folding them a no-op), 8 prompts, 32 greedy tokens,
   through gpu_check.nano_greedy: the option on against off in bf16 (Triton, CUDA graphs),
   beside off's own spread between bf16 and fp32 (the torch path in fp32), and on against
   off in fp32 (the algebra alone). Each pair is compared over the steps where both had the
   same context. What to look for: on_vs_off no larger than off_vs_fp32 (the fold is within
   bf16's own error), on_vs_fp32 about off_vs_fp32, on32_vs_off32 near 1e-4.
2. Timing: bench/engine_vs_vllm.py's nano runs of the standard workload at max_num_seqs 64
   and 256, the option off and on, each a fresh engine.bench process (a run that would not
   end inside the budget is skipped, not started).

    python -m tests.engine.nano.gpu_check_fused --out $OUT [--only logits|bench]

Writes $OUT/fused.jsonl (one JSON line a comparison, a summary, one a timed run) and
engine_vs_vllm's results under $OUT/bench/.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from pathlib import Path

import torch

from tests.engine.nano.gpu_check import _first_diff, log, nano_greedy

ARCH = "qwen2-1.5b"
ON = {"fuse_norm_linear": True}
# name -> (attention backend, options): bf16 is the device's default dtype.
RUNS = {
    "off": ("triton", {}),
    "on": ("triton", ON),
    "off32": ("torch", {"dtype": "float32"}),
    "on32": ("torch", {"dtype": "float32", **ON}),
}
PAIRS = (("on", "off"), ("off", "off32"), ("on", "off32"), ("on32", "off32"))


def norms_checkpoint(arch: str) -> str:
    """The arch's random checkpoint (bf16, the one engine.bench's jobs use) with each
    layer's RMSNorm weights drawn from U(0.5, 2.5) (seeded), under /tmp/nano-check."""
    from safetensors.torch import load_file, save_file

    from engine.checkpoints import resolve
    from engine.job import ModelRef

    src = resolve(ModelRef(arch=arch))
    out = Path(f"/tmp/nano-check/{arch}-norms")
    if (out / "config.json").is_file():
        return str(out)
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(17)
    for f in sorted(src.iterdir()):
        if f.suffix != ".safetensors":
            (tmp / f.name).write_bytes(f.read_bytes())
            continue
        tensors = load_file(str(f))
        for name in sorted(tensors):
            if name.endswith("layernorm.weight"):
                t = tensors[name]
                tensors[name] = (0.5 + 2 * torch.rand(t.shape, generator=g)).to(t.dtype)
        save_file(tensors, str(tmp / f.name), metadata={"format": "pt"})
    tmp.rename(out)
    return str(out)


def _same_context(a: list[int], b: list[int]) -> int:
    """Steps whose logits two runs computed on the same context: up to their first
    different token, that step included."""
    split = _first_diff(a, b)
    return len(a) if split is None else split + 1


def _sig(x: float) -> float:
    return float(f"{x:.3g}")


def logits_check(out: Path, n_tok: int) -> None:
    model_dir = norms_checkpoint(ARCH)
    g = torch.Generator().manual_seed(0)
    lens = [7, 20, 64, 100, 150, 257, 300, 513]
    prompts = [torch.randint(0, 10000, (n,), generator=g).tolist() for n in lens]
    got = {}
    for name, (backend, options) in RUNS.items():
        got[name] = nano_greedy(model_dir, backend, prompts, n_tok, out, **options)
        gc.collect()
        torch.cuda.empty_cache()
    worst = {f"{a}_vs_{b}": 0.0 for a, b in PAIRS}
    for i, p in enumerate(prompts):
        rec = {"phase": "fused-logits", "prompt_len": len(p),
               "logit_absmax": round(got["off32"][1][i].abs().max().item(), 3)}
        for a, b in PAIRS:
            (ta, la), (tb, lb) = (got[a][0][i], got[a][1][i]), (got[b][0][i], got[b][1][i])
            n = _same_context(ta, tb)
            diff = (la[:n] - lb[:n]).abs()
            key = f"{a}_vs_{b}"
            rec[key] = _sig(diff.max().item())
            rec[key + "_mean"] = _sig(diff.mean().item())
            rec[key + "_first_diff"] = _first_diff(ta, tb)
            worst[key] = max(worst[key], rec[key])
        log(out, **rec)
    log(out, phase="fused-logits-summary", **worst,
        # The fused path's own error (its distance from fp32) is no larger than the default
        # path's: on_vs_off, the sum of two independent bf16 errors, may exceed either.
        within_bf16_error=worst["on_vs_off32"] <= worst["off_vs_off32"],
        same_greedy_on_off=sum(got["on"][0][i] == got["off"][0][i] for i in range(len(lens))),
        prompts=len(lens))


def timing(out: Path, budget_s: float) -> None:
    from bench.engine_vs_vllm import main as engine_vs_vllm

    bench_dir = out / "bench"
    engine_vs_vllm(["--out", str(bench_dir), "--engines", "nano", "--max-num-seqs", "64,256",
                    "--nano-options", "{}", "--nano-options", json.dumps(ON),
                    "--budget-s", str(budget_s)])
    for f in sorted(bench_dir.glob("[0-9]*.json")):
        r = json.loads(f.read_text())
        log(out, phase="fused-bench", file=f.name, options=r.get("options"),
            max_num_seqs=r.get("max_num_seqs"), output_tok_s=r.get("output_tok_s"),
            elapsed_s=r.get("elapsed_s"), output_tokens=r.get("output_tokens"),
            start_s=r.get("start_s"), error=r.get("error"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="directory for the results")
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--budget-s", type=float, default=230)
    ap.add_argument("--only", choices=("logits", "bench"), default=None)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("error: needs CUDA (the CPU path is checked by the e2e tests)")
    t_end = time.monotonic() + a.budget_s
    a.out.mkdir(parents=True, exist_ok=True)
    jsonl = a.out / "fused.jsonl"
    log(jsonl, phase="start", torch=torch.__version__, cuda_name=torch.cuda.get_device_name())
    if a.only != "bench":
        t0 = time.monotonic()
        logits_check(jsonl, a.tokens)
        log(jsonl, phase="fused-logits-done", s=round(time.monotonic() - t0, 1))
    if a.only != "logits":
        timing(jsonl, t_end - time.monotonic())


if __name__ == "__main__":
    main()
