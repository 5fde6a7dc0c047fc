"""`python -m engine.bench`: run BenchJobs of one configuration on one engine start and
report a BenchResult for each.

    python -m engine.bench --job job.json --out result.json   (--job - reads stdin)
    python -m engine.bench --self-check

The job file holds one job, or a list of jobs that differ only in `repeat` (a sweep's
`reuse: repeats`). The engine starts once; before each job its state is reset
(Engine.reset), then the job's warm-up and timed generate run. --out gets one line per job,
in the jobs' order, written as soon as the job ends: its result, or {"error", "error_kind"};
each line is printed to stdout too. A failure before the first job's generates (the jobs
themselves, the engine's start) is every job's: a line each. A failure in a job's generates
is that job's alone, and the jobs after it do not run (the engine's state is unknown): their
lines are missing, which the runner reports as not reached. Exit status: 0 every job ok,
1 a job failed, 2 bad command line.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from engine import card_figures, checkpoints, envinfo, latency, roofline, variants
from engine.card_figures import CardFigures
from engine.errors import BadInput
from engine.job import BenchJob, ModelRef, job_start_line
from engine.memory_budget import ITEMSIZE
from engine.nano.config import ModelConfig
from engine.result import BenchResult, Conditions, Roofline, StepProfile
from engine.variants import Engine
from engine.workload import Workload, WorkloadSpec, build

# The untimed warm-up: this many of the workload's prompts, cut to this length, few tokens.
WARMUP_SEQS = 4
WARMUP_PROMPT_LEN = 32
WARMUP_TOKENS = 8


@dataclass
class Failure:
    error: str
    error_kind: str  # oom | bad_input | engine

    def to_json(self) -> str:
        return json.dumps({"error": self.error, "error_kind": self.error_kind})


def _set_threads() -> None:
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0:
        import torch

        torch.set_num_threads(int(threads))


def _prepare(job: BenchJob) -> tuple[dict[str, Any], Workload, Path]:
    """The job's options, workload and checkpoint. Raises BadInput for problems of the job."""
    try:
        kind = variants.kind(job.engine)
        options = kind.resolved(kind.normalize(job.options))
        kind.require_installed()
        workload = build(job.workload)
        model_dir = checkpoints.resolve(job.model)
        if job.max_num_seqs < 1:
            raise ValueError(f"max_num_seqs must be at least 1, got {job.max_num_seqs}")
        if job.max_model_len:
            longest = max(len(p) + n for p, n in zip(workload.prompts, workload.max_tokens,
                                                     strict=True))
            if longest > job.max_model_len:
                raise ValueError(f"a request needs {longest} tokens (prompt + max_tokens), "
                                 f"more than max_model_len {job.max_model_len}")
    except ValueError as e:
        raise BadInput(str(e)) from e
    return options, workload, Path(model_dir)


@dataclass
class Group:
    """Jobs of one configuration (they differ only in `repeat`) on one engine start."""

    jobs: list[BenchJob]
    options: dict[str, Any]
    workload: Workload
    env: dict
    engine: Engine
    model_dir: Path
    card: CardFigures | None  # for the roofline; None where it could not be measured
    # The process's age as its engine began to start: the interpreter, torch, the workload,
    # the job's checks and the host's figures (BenchResult.imports_s). None without /proc.
    before_engine_s: float | None

    @classmethod
    def start(cls, jobs: list[BenchJob]) -> Group:
        if not jobs:
            raise BadInput("the job file holds no job")
        first = jobs[0]
        if any(j.configuration != first.configuration for j in jobs[1:]):
            raise BadInput("the jobs of one engine start differ in more than their repeat")
        options, workload, model_dir = _prepare(first)
        _set_threads()
        env = envinfo.collect()  # before the engine starts: clocks at start, an idle GPU
        card = _card(env)  # measured (once per host) before the engine starts, in a child
        before_engine_s = process_age_s()
        return cls(jobs, options, workload, env, variants.start(first, model_dir), model_dir,
                   card, before_engine_s)

    def measure(self, i: int) -> BenchResult:
        """Run job i: reset the engine, warm up, time the generate."""
        import torch

        job, workload, engine = self.jobs[i], self.workload, self.engine
        engine.reset()
        warm = workload.prompts[:WARMUP_SEQS]
        engine.synchronize()
        t0 = time.monotonic()
        engine.generate(
            [p[:WARMUP_PROMPT_LEN] for p in warm],
            [WARMUP_TOKENS] * len(warm),
            job.workload.temperature,
            True,
        )
        engine.synchronize()
        warmup_s = time.monotonic() - t0

        # The priority and CPUs the timed run gets, read by the job itself; the runner adds
        # what it sees around the job (load, other GPU processes, CPU time).
        conditions = Conditions(nice=envinfo.own_nice(), cpu_affinity=envinfo.own_affinity())
        t0 = time.monotonic()
        outputs = engine.generate(
            workload.prompts, workload.max_tokens, job.workload.temperature, job.workload.ignore_eos
        )
        engine.synchronize()
        elapsed = time.monotonic() - t0
        if len(outputs) != len(workload.prompts):
            raise RuntimeError(
                f"engine returned {len(outputs)} outputs for {len(workload.prompts)} prompts"
            )
        stats = engine.stats()
        figures = latency.summarize(stats.get("request_timings") or [])
        steps, profile_note = self._profile(job) if job.profile == "kernels" else (None, None)
        line = self._roofline(job, [len(o) for o in outputs], stats.get("dtype"))
        gpu = envinfo.gpu_info()  # now CUDA has started, torch names the GPU by UUID
        if gpu and gpu["uuid"] != self.env.get("gpu", {}).get("uuid"):
            self.env["gpu"] = gpu
        device = getattr(engine, "device", None)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        # The start is paid once, by the group's first job: its figures are that job's.
        started = i == 0
        start = {name: engine.timings.get(name, 0.0) if started else 0.0
                 for name in ("load_s", "profile_s", "compile_s", "capture_s")}
        return BenchResult(
            engine=job.engine,
            variant=job.variant,
            model=job.model.label,
            workload=job.workload.name,
            workload_fingerprint=workload.fingerprint,
            num_seqs=len(workload.prompts),
            max_num_seqs=job.max_num_seqs,
            gpu_memory_utilization=job.gpu_memory_utilization,
            prompt_tokens=workload.prompt_tokens,
            requested_output_tokens=workload.requested_output_tokens,
            output_tokens=sum(len(o) for o in outputs),
            elapsed_s=elapsed,
            **start,
            warmup_s=warmup_s,
            prefill_s=stats.get("prefill_s"),
            decode_s=stats.get("decode_s"),
            kv_blocks=stats.get("kv_blocks"),
            block_size=stats.get("block_size"),
            kv_tokens=stats.get("kv_tokens"),
            preemptions=stats.get("preemptions"),
            prefill_tokens=stats.get("prefill_tokens"),
            decode_steps=stats.get("decode_steps"),
            **(asdict(figures) if figures else {}),
            peak_memory_bytes=engine.peak_memory_bytes(),
            compile_cache_warm=stats.get("compile_cache_warm") if started else None,
            engine_shared=i if len(self.jobs) > 1 else None,
            step_profiles=steps,
            profile_note=profile_note,
            roofline=line,
            device=getattr(device, "type", str(device)),
            options=self.options,
            env=dict(self.env),
            conditions=conditions,
        )

    def _profile(self, job: BenchJob) -> tuple[list[StepProfile] | None, str | None]:
        """After the timed run: its workload's steps profiled, or why there are none. A
        failure here is noted, not the job's: its timed figures stand."""
        take = getattr(self.engine, "profile_kernels", None)
        if take is None:
            return None, getattr(self.engine, "kernel_profile_note",
                                 f"the {job.engine} adapter takes no kernel profile")
        w = self.workload
        try:
            return take(w.prompts, w.max_tokens, job.workload.temperature,
                        job.workload.ignore_eos), None
        except Exception as e:
            traceback.print_exc()
            return None, f"profiling failed: {one_line(e)}"

    def _roofline(self, job: BenchJob, output_lens: list[int],
                  dtype: str | None) -> Roofline | None:
        """The work this run did (its prompts, the tokens it returned) against the card."""
        if self.card is None or dtype not in ITEMSIZE:
            return None
        try:
            mcfg = ModelConfig.from_dir(self.model_dir)
        except (OSError, ValueError, KeyError):  # not a Qwen2/Qwen3 checkpoint
            return None
        cost = roofline.workload_cost(roofline.model_size(mcfg, ITEMSIZE[dtype]),
                                      [len(p) for p in self.workload.prompts], output_lens,
                                      job.max_num_seqs)
        c = self.card
        return roofline.roofline(cost, c.name, c.copy_bytes_per_s, c.matmul_flops_per_s)

    def close(self) -> None:
        self.engine.close()


def _card(env: dict) -> CardFigures | None:
    try:
        return card_figures.cached(env)
    except Exception as e:  # a roofline less, not a failed job
        print(f"[benchsweep] no roofline: {one_line(e)}", file=sys.stderr, flush=True)
        return None


def run_in_process(job: BenchJob) -> BenchResult:
    """Run one job in this process. Raises BadInput for problems of the job itself."""
    group = Group.start([job])
    try:
        return group.measure(0)
    finally:
        group.close()


def classify(e: BaseException) -> str:
    if isinstance(e, BadInput):
        return "bad_input"
    if isinstance(e, MemoryError):
        return "oom"
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(e, torch.OutOfMemoryError):
        return "oom"
    # CUDA OOM raised outside the caching allocator (cuBLAS, Triton) is a plain RuntimeError.
    if isinstance(e, RuntimeError) and "out of memory" in str(e).lower():
        return "oom"
    return "engine"


def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or "(no message)"
    return f"{type(e).__name__}: {text}"[:1000]


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text + "\n")
    os.replace(tmp, path)


class Report:
    """The --out file, one line per job so far, rewritten whole (atomically) at each line,
    so that a reader never sees half a line and a job's line outlives a later crash."""

    def __init__(self, out: Path):
        self.out, self.lines = out, []

    def line(self, text: str) -> None:
        self.lines.append(text)
        _write_atomic(self.out, "\n".join(self.lines))
        sys.stdout.flush()
        print(text, flush=True)


def _load_jobs(source: str) -> list[BenchJob]:
    """One job, or a list of them."""
    try:
        data = json.loads(sys.stdin.read() if source == "-" else Path(source).read_text())
        return [BenchJob.from_dict(d) for d in (data if isinstance(data, list) else [data])]
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise BadInput(f"cannot read job {source}: {one_line(e)}") from e


def self_check() -> str:
    """Run a tiny job with every engine kind whose adapter imports here; return a summary.
    A kind whose third-party package is not installed is skipped, not failed. A kind with
    a package of its own (vllm) is only imported: its start takes a minute and wants a GPU."""
    model = ModelRef(arch="tiny")
    checkpoints.resolve(model)
    ran, skipped = [], []
    for name, kind in variants.KINDS.items():
        if kind.requires:
            try:
                kind.require_installed()
            except ValueError:
                skipped.append(f"{name} (no {kind.requires})")
                continue
            importlib.import_module(kind.requires)
            ran.append(f"{name} {metadata.version(kind.requires)} imports")
            continue
        try:
            importlib.import_module(kind.module)
        except ModuleNotFoundError as e:
            if e.name and e.name.split(".")[0] != "engine":
                skipped.append(f"{name} (no {e.name})")
                continue
            raise
        job = BenchJob(
            engine=name,
            variant=f"self-check-{name}",
            model=model,
            workload=WorkloadSpec(
                num_seqs=2, input_len=(8, 16), output_len=(4, 8), temperature=0.0
            ),
            max_num_seqs=2,
            gpu_memory_utilization=0.5,
            max_model_len=256,
        )
        r = run_in_process(job)
        if r.output_tokens != r.requested_output_tokens:
            raise RuntimeError(
                f"{name}: {r.output_tokens} tokens, expected {r.requested_output_tokens}"
            )
        ran.append(f"{name} {r.output_tokens} tok in {r.elapsed_s:.2f}s on {r.device}")
    if not ran:
        raise RuntimeError(f"no engine could run (skipped: {', '.join(skipped)})")
    line = "; ".join(ran)
    return line + (f"; skipped {', '.join(skipped)}" if skipped else "")


def process_age_s() -> float | None:
    """Seconds since this process started, from /proc (Linux); None elsewhere."""
    try:
        # Field 22, starttime in clock ticks after boot, counted from after the command's ")".
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.bench", description=__doc__.split("\n")[0])
    p.add_argument("--job", help="job JSON file, or - for stdin")
    p.add_argument("--out", help="where to write the result JSON")
    p.add_argument("--self-check", action="store_true", help="run a tiny job with each engine")
    args = p.parse_args(argv)
    if args.self_check:
        try:
            print(f"self-check ok: {self_check()}", flush=True)
            return 0
        except Exception as e:
            traceback.print_exc()
            print(f"self-check failed: {one_line(e)}", flush=True)
            return 1
    if not args.job or not args.out:
        p.error("--job and --out are required (or --self-check)")
    report, jobs = Report(Path(args.out)), []
    try:
        jobs = _load_jobs(args.job)
        group = Group.start(jobs)
    except Exception as e:
        traceback.print_exc()
        for _ in jobs or [None]:  # what every job shared failed
            report.line(Failure(one_line(e), classify(e)).to_json())
        return 1
    try:
        for i, job in enumerate(jobs):
            # A line in the job's log as each job's timed part begins (stderr: stdout is
            # the result lines').
            print(job_start_line(i, len(jobs), f"{job.variant}, max_num_seqs "
                                 f"{job.max_num_seqs}, repeat {job.repeat}: warm-up, then the "
                                 f"timed run of {len(group.workload.prompts)} prompts"),
                  file=sys.stderr, flush=True)
            try:
                result = group.measure(i)
            except Exception as e:
                traceback.print_exc()
                report.line(Failure(one_line(e), classify(e)).to_json())
                return 1
            imports_s = group.before_engine_s
            result.imports_s = imports_s if i == 0 or imports_s is None else 0.0
            report.line(result.to_json())
    finally:
        group.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
