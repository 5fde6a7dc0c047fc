"""The card's measured copy bandwidth and matmul throughput, which a result's roofline is
read against (engine/roofline.py): measured once per host and device and cached.

    python -m engine.card_figures      (measures this process's device, prints one JSON line)

A job does not measure in its own process: it runs this module in a child process before
its engine starts, so that its own CUDA context, allocator and clocks are those of a job
without it. The cache file (BENCHSWEEP_CACHE/cards/) is keyed by the GPU's NVML UUID (on
CPU: the CPU model and count) and the torch version. A CUDA device copies 2 x 1 GiB and
multiplies 8192^2 bfloat16 matrices; a CPU 2 x 64 MiB and 1024^2 float32 matrices (the
dtype nano runs on CPU)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from engine.settings import settings

MEASURE_TIMEOUT_S = 180


@dataclass(frozen=True)
class CardFigures:
    name: str
    copy_bytes_per_s: float  # read + write
    matmul_flops_per_s: float
    matmul_dtype: str


def _timed(fn, reps: int, sync) -> float:
    fn()
    sync()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    sync()
    return (time.perf_counter() - t) / reps


def measure() -> CardFigures:
    import torch

    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    copy_bytes, n, dtype = ((1 << 30, 8192, torch.bfloat16) if cuda
                            else (64 << 20, 1024, torch.float32))
    src = torch.empty(copy_bytes // 4, dtype=torch.float32, device=dev)
    dst = torch.empty_like(src)
    bw = 2 * copy_bytes / _timed(lambda: dst.copy_(src), 10, sync)
    src = dst = None  # freed before the matmul's buffers
    a = torch.randn(n, n, dtype=dtype, device=dev)
    b = torch.randn_like(a)
    flops = 2 * n**3 / _timed(lambda: a @ b, 20 if cuda else 5, sync)
    name = torch.cuda.get_device_name(dev) if cuda else _cpu_name()
    return CardFigures(name, bw, flops, str(dtype).removeprefix("torch."))


def _cpu_name() -> str:
    from engine.envinfo import _cpu_model

    return f"CPU {_cpu_model() or 'unknown'} x{os.cpu_count()}"


def cache_key(env: dict) -> str:
    """The device as the job's envinfo names it (before CUDA starts), and torch's version."""
    gpu = env.get("gpu") or {}
    device = gpu.get("uuid") or f"cpu:{env.get('cpu')}:{env.get('cpu_count')}"
    return f"{device}|torch {metadata.version('torch')}"


def cached(env: dict) -> CardFigures:
    """The figures of the device `env` (envinfo.collect()) names: from the cache, else
    measured in a child process and cached. Raises RuntimeError where it cannot measure."""
    key = cache_key(env)
    path = settings().cache / "cards" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    try:
        data = json.loads(path.read_text())
        if data.get("key") == key:
            return CardFigures(**data["figures"])
    except (OSError, ValueError, TypeError, KeyError):
        pass
    run = subprocess.run([sys.executable, "-m", "engine.card_figures"], capture_output=True,
                         text=True, timeout=MEASURE_TIMEOUT_S)
    if run.returncode != 0:
        tail = (run.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"measuring the card failed: {tail}")
    figures = CardFigures(**json.loads(run.stdout.strip().splitlines()[-1]))
    _write(path, json.dumps({"key": key, "figures": asdict(figures)}))
    return figures


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    print(json.dumps(asdict(measure())), flush=True)
