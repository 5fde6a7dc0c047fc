"""Check GPU telemetry on a real GPU host: one nano job through run_job_process with the
production NVML reader (engine/gpu_telemetry.py), and what it sampled printed: a direct
reading first, then the number of samples, the result's phases and its timed generate's
summary, the throttle reasons decoded, other processes seen, and the GPU mark.

    python bench/telemetry_check.py [--arch qwen2-1.5b] [--num-seqs 128] [--out DIR]

Exit status 0 when the job succeeded and its attempt carries samples from every NVML field
the card reports, 1 otherwise. `--arch tiny` is quickest, but its generate is shorter than a
sample period, so its summary is usually empty.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from db.read.telemetry import gpu_mark, phases, summary_text  # noqa: E402
from engine import gpu_telemetry  # noqa: E402
from engine.gpu_telemetry import SERIES, summarize, throttle_reasons  # noqa: E402
from engine.job import BenchJob, ModelRef  # noqa: E402
from engine.workload import WorkloadSpec  # noqa: E402
from orchestrator.executors.process import run_job_process  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="qwen2-1.5b")
    p.add_argument("--num-seqs", type=int, default=128)
    p.add_argument("--max-num-seqs", type=int, default=64)
    p.add_argument("--timeout", type=float, default=600, help="seconds the job may take")
    p.add_argument("--out", type=Path, help="where to write the outcome (JSON), if anywhere")
    a = p.parse_args()
    gpu = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]

    with gpu_telemetry.nvml_reader(gpu) as read:
        if read is None:
            print(f"no NVML reader for GPU {gpu!r}: no pynvml, no driver, or no such device")
            return 1
        r = read()
    print(f"GPU {gpu} now: {r}")
    print(f"  throttle reasons: {throttle_reasons(r.throttle) or 'none'} (mask "
          f"{'-' if r.throttle is None else hex(r.throttle)})")

    job = BenchJob(engine="nano", variant=f"telemetry-{a.max_num_seqs}",
                   model=ModelRef(arch=a.arch), workload=WorkloadSpec(num_seqs=a.num_seqs),
                   max_num_seqs=a.max_num_seqs)
    os.chdir(ROOT)  # run_job_process starts `python -m engine.bench` in the current directory
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    (out,) = run_job_process([job.to_json()], gpu=gpu, cuda_visible_devices=gpu,
                             timeout_s=a.timeout)
    if a.out is not None:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "outcome.json").write_text(json.dumps(out.to_dict(), sort_keys=True))
    print(f"job {out.outcome} in {out.elapsed_s:.1f} s"
          + (f": {out.error}" if out.error else ""))
    tel = out.telemetry
    if tel is None:
        print("no telemetry came back with the outcome")
        return 1
    print(f"{len(tel)} sample(s), one every {tel.period_s:g} s, over {tel.t[-1]:.1f} s; "
          f"result line at {tel.done_s} s")
    unread = [name for name in SERIES if all(v is None for v in getattr(tel, name))]
    print(f"fields never read (NVML NotSupported or the like): {', '.join(unread) or 'none'}")
    seen = collections.Counter(reason for m in tel.throttle for reason in throttle_reasons(m))
    masks = collections.Counter(hex(m) for m in tel.throttle if m is not None)
    print(f"throttle reasons over the attempt (samples): {dict(seen) or 'none'}; raw masks "
          f"{dict(masks)}")
    print(f"other processes on the GPU at a sample: most {max(o or 0 for o in tel.others)}")
    for name in ("gpu_pct", "power_w", "sm_mhz", "temp_c", "mem_used_mib"):
        vals = [v for v in getattr(tel, name) if v is not None]
        if vals:
            print(f"  {name}: min {min(vals)}, max {max(vals)}")
    if out.result is None:
        print(out.log_tail[-2000:])
        return 1
    res = out.result
    print(f"{res.output_tokens:,} tokens in {res.elapsed_s:.2f} s ({res.output_tok_s:,.0f} "
          f"tok/s) on {res.gpu_name}; engine start {res.start_s:.2f} s")
    for name, start, end in phases(tel, res):
        print(f"  {name}: {start:.2f} .. {end:.2f} s")
    print(summary_text(summarize(tel, res.elapsed_s)))
    print(f"GPU mark: {gpu_mark(res, tel) or 'none'}")
    return 1 if unread == list(SERIES) else 0


if __name__ == "__main__":
    sys.exit(main())
