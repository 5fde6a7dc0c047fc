"""One nano job with `profile: kernels` through engine.bench, and its breakdown printed: to
check the kernel categories against real CUDA kernel names and the roofline's figures.

    python bench/profile_job.py --out $OUT [--arch qwen2-1.5b] [--max-num-seqs 256]

Writes into --out: job.json, result.jsonl (the job's result, or its outcome) and profile.txt
(printed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.job import BenchJob, ModelRef  # noqa: E402
from engine.result import BenchResult  # noqa: E402
from engine.workload import WorkloadSpec  # noqa: E402
from orchestrator.executors.process import run_job_process  # noqa: E402


def summary(r: BenchResult) -> str:
    lines = [f"{r.variant}: {r.output_tokens:,} tokens in {r.elapsed_s:.2f} s "
             f"({r.output_tok_s:,.0f} tok/s) on {r.gpu_name or r.device}; prefill "
             f"{r.prefill_s or 0:.2f} s, decode {r.decode_s or 0:.2f} s, between steps "
             f"{r.between_steps_s or 0:.2f} s"]
    line = r.roofline
    if line is None:
        lines.append("no roofline")
    else:
        lines.append(
            f"card {line.card}: copy {line.copy_bytes_per_s / 1e12:.2f} TB/s, matmul "
            f"{line.matmul_flops_per_s / 1e12:.0f} TFLOP/s; prefill {line.prefill_bytes / 1e9:,.0f}"
            f" GB {line.prefill_flops / 1e12:,.1f} TFLOP floor {line.prefill_floor_s:.3f} s; "
            f"decode {line.decode_bytes / 1e9:,.0f} GB {line.decode_flops / 1e12:,.1f} TFLOP "
            f"floor {line.decode_floor_s:.3f} s; floor {line.floor_s:.3f} s = "
            f"{r.percent_of_floor:.0f}% of the measured {r.elapsed_s:.2f} s")
    if r.profile_note:
        lines.append(f"no step profile: {r.profile_note}")
    for s in r.step_profiles or []:
        lines.append(f"{s.kind} step ({'graph' if s.graph else 'eager'}), {s.seqs} seqs, "
                     f"{s.tokens:,} tokens, {s.context_tokens:,} context: {s.activity} busy "
                     f"{1e3 * s.busy_s:.3f} ms of {1e3 * s.wall_s:.3f} ms wall; "
                     + ", ".join(f"{c} {1e3 * v:.3f}" for c, v in
                                 sorted(s.categories_s.items(), key=lambda kv: -kv[1])))
        from engine.kernel_categories import category

        lines += [f"  {1e3 * v:8.3f} ms  {category(k):10s} {k[:100]}"
                  for k, v in sorted(s.top_kernels_s.items(), key=lambda kv: -kv[1])]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--arch", default="qwen2-1.5b")
    p.add_argument("--max-num-seqs", type=int, default=256)
    p.add_argument("--num-seqs", type=int, default=256)
    p.add_argument("--timeout", type=float, default=600, help="seconds the job may take")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    job = BenchJob(engine="nano", variant=f"nano-{a.max_num_seqs}", model=ModelRef(arch=a.arch),
                   workload=WorkloadSpec(num_seqs=a.num_seqs), max_num_seqs=a.max_num_seqs,
                   profile="kernels")
    (a.out / "job.json").write_text(job.to_json())
    os.chdir(ROOT)  # run_job_process starts `python -m engine.bench` in the current directory
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    gpu = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]
    (outcome,) = run_job_process([job.to_json()], gpu=gpu, cuda_visible_devices=gpu,
                                 timeout_s=a.timeout)
    d = outcome.to_dict()
    (a.out / "result.jsonl").write_text(json.dumps(d.get("result") or d, sort_keys=True) + "\n")
    if outcome.result is None:
        print(f"job {outcome.outcome}: {outcome.error}\n{outcome.log_tail or ''}", flush=True)
        return 1
    text = summary(outcome.result)
    (a.out / "profile.txt").write_text(text + "\n")
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
