"""Commands on this machine's engine: one benchmark job without a sweep, and random-weight
checkpoints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.markup import escape
from rich.table import Table

from engine.errors import UserError
from engine.job import DEFAULT_GPU_MEMORY_UTILIZATION
from engine.workload import WorkloadSpec
from orchestrator.cli.common import err, out

_WORKLOAD = WorkloadSpec()  # what --num-seqs, --input-len, ... default to


def _pair(lo_hi: tuple[int, int]) -> str:
    return f"{lo_hi[0]},{lo_hi[1]}"

model_app = typer.Typer(help="Checkpoints with random weights of named architectures.",
                        no_args_is_help=True)


@model_app.command("init")
def model_init(
    arch: Annotated[str, typer.Option(help="qwen2-1.5b | qwen2-0.5b | qwen3-0.6b | tiny | ...")],
    output: Annotated[Path, typer.Option("--out", "-o", help="Directory to write")],
    seed: Annotated[int, typer.Option(help="Seed of the random weights")] = 0,
    dtype: Annotated[str, typer.Option(help="bfloat16 | float16 | float32")] = "bfloat16",
) -> None:
    """Write an HF-format checkpoint (config.json + safetensors) with random weights."""
    code = subprocess.call([sys.executable, "-m", "engine.checkpoints", "--arch", arch,
                            "--out", str(output), "--seed", str(seed), "--dtype", dtype])
    raise typer.Exit(code)


def bench(
    engine: Annotated[str, typer.Option(help="Engine kind: hf, nano, vllm")] = "hf",
    model: Annotated[str | None, typer.Option(help="HF-format checkpoint directory",
                                              show_default="none: give --model or --arch")]
    = None,
    arch: Annotated[str | None, typer.Option(help="Or a named architecture, random weights",
                                             show_default="none")] = None,
    workload: Annotated[str, typer.Option(help="standard | phase1")] = "standard",
    num_seqs: Annotated[int | None, typer.Option(
        min=1, help="Requests in the workload",
        show_default=f"the workload's, {_WORKLOAD.num_seqs}")] = None,
    input_len: Annotated[str | None, typer.Option(
        help="Prompt tokens, MIN,MAX", show_default=_pair(_WORKLOAD.input_len))] = None,
    output_len: Annotated[str | None, typer.Option(
        help="Output tokens, MIN,MAX", show_default=_pair(_WORKLOAD.output_len))] = None,
    temperature: Annotated[float | None, typer.Option(
        min=0, help="Sampling temperature", show_default=f"{_WORKLOAD.temperature}")] = None,
    max_num_seqs: Annotated[int, typer.Option(min=1, help="Sequences in a batch")] = 256,
    gpu_memory_utilization: Annotated[float, typer.Option(
        min=0.01, max=1.0, help="Share of GPU memory the engine may take")] = (
        DEFAULT_GPU_MEMORY_UTILIZATION),
    option: Annotated[list[str] | None, typer.Option(
        "--option", "-O", help="Engine option NAME=VALUE, repeated",
        show_default="the engine's")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds before the job's processes are "
                                                "killed")] = 3600,
    as_json: Annotated[bool, typer.Option("--json", help="Print the BenchResult as JSON")]
    = False,
) -> None:
    """Run one job on this machine, without a sweep, and print its BenchResult."""
    from db.read.telemetry import MARK_TITLE, gpu_mark, summary_text
    from engine import variants
    from engine.gpu_telemetry import summarize
    from engine.job import BenchJob, ModelRef
    from engine.workload import RECIPES, WorkloadSpec
    from orchestrator.executors.local import visible_gpus
    from orchestrator.executors.process import run_job_process

    if (model is None) == (arch is None):
        raise UserError("give exactly one of --model DIR or --arch NAME", 2)
    if workload not in RECIPES:
        raise UserError(f"unknown workload {workload!r}; known: {', '.join(sorted(RECIPES))}", 2)
    try:
        kind = variants.kind(engine)
        opts = dict(_parse_option(o) for o in option or [])
        opts = kind.normalize(opts)
        w = {"name": workload}
        if num_seqs:
            w["num_seqs"] = num_seqs
        for name, value in (("input_len", input_len), ("output_len", output_len)):
            if value:
                w[name] = _parse_range(name, value)
        if temperature is not None:
            w["temperature"] = temperature
        job = BenchJob(engine=engine, variant=engine, model=ModelRef(path=model, arch=arch),
                       workload=WorkloadSpec(**w), max_num_seqs=max_num_seqs,
                       gpu_memory_utilization=gpu_memory_utilization, options=opts)
    except ValueError as e:
        raise UserError(str(e), 2) from None
    gpus = visible_gpus()
    (outcome,) = run_job_process([job.to_json()], gpu=gpus[0] if gpus else "cpu",
                                 cuda_visible_devices=gpus[0] if gpus else "", timeout_s=timeout)
    if outcome.outcome != "succeeded":
        if outcome.error_kind == "crash":
            err.print(outcome.log_tail, markup=False, highlight=False)
        raise UserError(f"{outcome.error_kind}: {outcome.error}")
    r = outcome.result
    if as_json:
        print(r.to_json())
        return
    table = Table(title=f"{engine} on {job.model.label}, workload {workload}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for k in ("output_tokens", "requested_output_tokens", "prompt_tokens", "elapsed_s",
              "output_tok_s", "total_tok_s", "prefill_tok_s", "decode_tok_s", "load_s",
              "profile_s", "compile_s", "capture_s", "warmup_s", "start_s", "kv_blocks",
              "block_size", "kv_tokens", "compile_cache_warm", "peak_memory_bytes", "device",
              "workload_fingerprint"):
        v = getattr(r, k)
        table.add_row(k, "" if v is None else f"{v:,.2f}" if isinstance(v, float) else str(v))
    c = r.conditions
    load = [f"{x:.2f}" if x is not None else "?" for x in (c.load_before, c.load_after)]
    for k, v in (("nice", c.nice), ("cpu_affinity", _cpus(c.cpu_affinity)),
                 ("load (before, after)", f"{load[0]}, {load[1]} on {c.cpu_count} CPUs"),
                 ("cpu_s", None if c.cpu_s is None else f"{c.cpu_s:,.2f}"),
                 ("gpu_processes (before, after)",
                  "not read (CPU, or no NVML)"
                  if c.gpu_processes_before is None and c.gpu_processes_after is None
                  else f"{len(c.gpu_processes_before or [])}, "
                       f"{len(c.gpu_processes_after or [])}")):
        table.add_row(k, "" if v is None else escape(str(v)))
    table.add_row("disturbed", "[yellow]" + escape("; ".join(r.disturbed)) + "[/]"
                  if r.disturbed else "no")
    tel = outcome.telemetry
    table.add_row("GPU telemetry", "not sampled (CPU, or no NVML)" if tel is None
                  else escape(summary_text(summarize(tel, r.elapsed_s))))
    mark = gpu_mark(r, tel)
    table.add_row(MARK_TITLE, f"[yellow]{escape(mark)}[/]" if mark else "none")
    out.print(table)


def _cpus(cpus: list[int] | None) -> str | None:
    """[0, 1, 2, 5] as "0-2,5"."""
    if cpus is None:
        return None
    runs: list[list[int]] = []
    for c in cpus:
        if runs and c == runs[-1][1] + 1:
            runs[-1][1] = c
        else:
            runs.append([c, c])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _parse_option(text: str) -> tuple[str, object]:
    name, eq, value = text.partition("=")
    if not eq or not name:
        raise ValueError(f"--option takes NAME=VALUE, got {text!r}")
    return name, yaml.safe_load(value)


def _parse_range(name: str, text: str) -> tuple[int, int]:
    try:
        lo, hi = (int(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"--{name.replace('_', '-')} takes MIN,MAX, got {text!r}") from None
    return lo, hi


COMMANDS = (bench,)
