"""nano variants against each other on one GPU, with intervals: each variant's repeats of one
max_num_seqs share one engine start (engine.bench with a list of jobs, as `reuse: repeats`
runs them), and the variants' processes alternate over --rounds so a drift of the card
touches every variant alike. Prints each variant's mean output tok/s with its 95% interval
and its speedup over the first variant (Fieller, db/read/stats.py).

    python bench/nano_ab.py --out $OUT/ab --max-num-seqs 64,256 \
        --variant nano='{}' --variant fused='{"fuse_norm_linear": true}'

Each process is started by run_job_process, exactly as a sweep's `reuse: repeats` job is
(GPU idle checks, nice, timeout). Writes one results file a process (NAME-SEQS-ROUND.jsonl:
each job's result, or its outcome where it failed) and table.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from db.read.stats import Sample, mean_halfwidth, speedup  # noqa: E402
from engine.job import BenchJob, ModelRef  # noqa: E402
from engine.workload import WorkloadSpec  # noqa: E402
from orchestrator.executors.process import run_job_process  # noqa: E402


def run_group(out: Path, name: str, options: dict, seqs: int, rnd: int, a) -> list[float]:
    jobs = [BenchJob(engine="nano", variant=name, model=ModelRef(arch=a.arch),
                     workload=WorkloadSpec(num_seqs=a.num_seqs), max_num_seqs=seqs,
                     options=options, repeat=r) for r in range(a.repeats)]
    gpu = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]
    outs = [o.to_dict() for o in run_job_process([j.to_json() for j in jobs], gpu=gpu,
                                                 cuda_visible_devices=gpu, timeout_s=a.timeout)]
    (out / f"{name}-{seqs}-{rnd}.jsonl").write_text(
        "".join(json.dumps(o.get("result") or o, sort_keys=True) + "\n" for o in outs))
    failed = [o for o in outs if o["outcome"] != "succeeded"]
    if failed:
        print(f"{name} at {seqs}: {failed[0]['outcome']}: {failed[0].get('error')}", flush=True)
    return [o["result"]["output_tok_s"] for o in outs if o["outcome"] == "succeeded"]


def sample(xs: list[float]) -> Sample:
    return Sample(len(xs), statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else
                  float("nan"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--arch", default="qwen2-1.5b")
    p.add_argument("--num-seqs", type=int, default=256)
    p.add_argument("--max-num-seqs", default="64,256")
    p.add_argument("--variant", action="append", required=True,
                   help="NAME=JSON options; the first is the baseline")
    p.add_argument("--repeats", type=int, default=3, help="timed runs an engine start")
    p.add_argument("--rounds", type=int, default=2, help="engine starts a variant")
    p.add_argument("--timeout", type=float, default=240, help="seconds a process may take")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    os.chdir(ROOT)  # run_job_process starts `python -m engine.bench` in the current directory
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    variants = [(v.split("=", 1)[0], json.loads(v.split("=", 1)[1])) for v in a.variant]
    table = []
    for seqs in [int(s) for s in a.max_num_seqs.split(",")]:
        figures: dict[str, list[float]] = {name: [] for name, _ in variants}
        for rnd in range(a.rounds):
            for name, options in variants if rnd % 2 == 0 else variants[::-1]:
                figures[name] += run_group(a.out, name, options, seqs, rnd, a)
        base = sample(figures[variants[0][0]]) if figures[variants[0][0]] else None
        for name, _ in variants:
            xs = figures[name]
            if not xs:
                table.append(f"max_num_seqs {seqs:4d} {name:16s} no result")
                continue
            s = sample(xs)
            line = (f"max_num_seqs {seqs:4d} {name:16s} n={s.n} {s.mean:9,.0f} ± "
                    f"{mean_halfwidth(s.n, s.std):7,.0f} tok/s")
            if base and name != variants[0][0]:
                sp = speedup(s, base)
                line += f"  {sp.ratio:.3f}× ({sp.interval_text()}) {sp.verdict}"
            table.append(line)
            print(line, flush=True)
    (a.out / "table.txt").write_text("\n".join(table) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
