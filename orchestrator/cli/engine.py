"""Commands on this machine's engine: one benchmark job without a sweep, and random-weight
checkpoints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.table import Table

from engine.errors import UserError
from engine.job import DEFAULT_GPU_MEMORY_UTILIZATION
from orchestrator.cli.common import err, out

model_app = typer.Typer(help="Checkpoints with random weights of named architectures.",
                        no_args_is_help=True)


@model_app.command("init")
def model_init(
    arch: Annotated[str, typer.Option(help="qwen2-1.5b | qwen2-0.5b | qwen3-0.6b | tiny | ...")],
    output: Annotated[Path, typer.Option("--out", help="Directory to write")],
    seed: int = 0,
    dtype: str = "bfloat16",
) -> None:
    """Write an HF-format checkpoint (config.json + safetensors) with random weights."""
    code = subprocess.call([sys.executable, "-m", "engine.checkpoints", "--arch", arch,
                            "--out", str(output), "--seed", str(seed), "--dtype", dtype])
    raise typer.Exit(code)


def bench(
    engine: Annotated[str, typer.Option(help="Engine kind: hf, nano, vllm")] = "hf",
    model: Annotated[str | None, typer.Option(help="HF-format checkpoint directory")] = None,
    arch: Annotated[str | None, typer.Option(help="Or a named architecture, random weights")]
    = None,
    workload: str = "standard",
    num_seqs: Annotated[int | None, typer.Option(min=1)] = None,
    input_len: Annotated[str | None, typer.Option(help="MIN,MAX")] = None,
    output_len: Annotated[str | None, typer.Option(help="MIN,MAX")] = None,
    temperature: Annotated[float | None, typer.Option(min=0)] = None,
    max_num_seqs: Annotated[int, typer.Option(min=1)] = 256,
    gpu_memory_utilization: Annotated[float, typer.Option(min=0.01, max=1.0)] = (
        DEFAULT_GPU_MEMORY_UTILIZATION),
    option: Annotated[list[str] | None, typer.Option("--option", "-o",
                                                     help="Engine option NAME=VALUE")] = None,
    timeout: float = 3600,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Run one job on this machine, without a sweep, and print its BenchResult."""
    from engine import variants
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
    outcome = run_job_process(job.to_json(), gpu=gpus[0] if gpus else "cpu",
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
    out.print(table)


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
