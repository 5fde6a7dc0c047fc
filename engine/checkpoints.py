"""HF-format checkpoints with random weights for named architectures (no model hub needed).

The architectures are plain data in engine/archs.py, which the coordinator reads without
torch; everything here that needs torch, transformers or safetensors imports it inside the
function that uses it.

Every tensor is drawn from its own torch.Generator, seeded from (seed, tensor name), so a
checkpoint does not depend on the order or the parallelism of the writing.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from engine.archs import ARCHS, arch_config
from engine.job import ModelRef
from engine.memory_budget import ITEMSIZE
from engine.settings import settings

DTYPES = ("bfloat16", "float16", "float32")
# save_pretrained shards at 5 GB; we shard smaller so a shard never needs much memory.
MAX_SHARD_BYTES = 2 * 1024**3


def config_for(arch: str, dtype: str = "bfloat16") -> dict[str, Any]:
    """The config.json we write: the arch's HF config with its dtype under both spellings
    (transformers 5 reads `dtype`, older readers `torch_dtype`)."""
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPES)}")
    return dict(arch_config(arch)) | {"torch_dtype": dtype, "dtype": dtype}


def tensor_specs(arch: str) -> list[tuple[str, tuple[int, ...]]]:
    """Every tensor a checkpoint of `arch` holds, in the model's state_dict order, read from
    the transformers model class built on the meta device (nothing is allocated)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = config_for(arch)
    hf_config = AutoConfig.for_model(**{k: v for k, v in cfg.items() if k != "dtype"})
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(hf_config)
    specs = [(name, tuple(t.shape)) for name, t in model.state_dict().items()]
    if cfg["tie_word_embeddings"]:
        specs = [(n, s) for n, s in specs if n != "lm_head.weight"]
    return specs


def _tensor_seed(seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little")


def _fill(name: str, shape: tuple[int, ...], seed: int, dtype: Any) -> Any:
    import torch

    if name.endswith("norm.weight"):
        return torch.ones(shape, dtype=dtype)
    gen = torch.Generator().manual_seed(_tensor_seed(seed, name))
    std = 0.01 if name.endswith(".bias") else 0.02
    return torch.empty(shape, dtype=dtype).normal_(0.0, std, generator=gen)


def _shards(specs: list[tuple[str, tuple[int, ...]]], itemsize: int) -> list[list[int]]:
    shards: list[list[int]] = [[]]
    size = 0
    for i, (_, shape) in enumerate(specs):
        nbytes = itemsize * _numel(shape)
        if shards[-1] and size + nbytes > MAX_SHARD_BYTES:
            shards.append([])
            size = 0
        shards[-1].append(i)
        size += nbytes
    return shards


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def write_checkpoint(
    arch: str, out_dir: str | os.PathLike, seed: int = 0, dtype: str = "bfloat16"
) -> Path:
    """Write config.json and safetensors with random weights of `arch` into `out_dir`
    (which must not exist or be empty). Written into a sibling temp dir, then renamed, so a
    crash never leaves a half checkpoint at `out_dir`."""
    import torch
    from safetensors.torch import save_file

    cfg = config_for(arch, dtype)
    out = Path(out_dir).expanduser().absolute()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    specs = tensor_specs(arch)
    torch_dtype = getattr(torch, dtype)
    shards = _shards(specs, ITEMSIZE[dtype])
    names = (
        ["model.safetensors"]
        if len(shards) == 1
        else [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    )
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        weight_map: dict[str, str] = {}
        total = 0
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            for fname, idx in zip(names, shards, strict=True):
                # torch releases the GIL while filling, so threads draw tensors in parallel.
                tensors = dict(
                    pool.map(lambda i: (specs[i][0], _fill(*specs[i], seed, torch_dtype)), idx)
                )
                save_file(tensors, str(tmp / fname), metadata={"format": "pt"})
                for name, t in tensors.items():
                    weight_map[name] = fname
                    total += t.numel() * t.element_size()
                del tensors
        if len(shards) > 1:
            index = {"metadata": {"total_size": total}, "weight_map": weight_map}
            (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        _default_modes(tmp)
        if out.exists():
            out.rmdir()
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _default_modes(directory: Path) -> None:
    # mkdtemp makes the dir 0700 and safetensors writes 0600: give the usual umask modes.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(directory, 0o777 & ~umask)
    for f in directory.iterdir():
        os.chmod(f, 0o666 & ~umask)


def cache_root() -> Path:
    return settings().cache


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def resolve(ref: ModelRef) -> Path:
    """The checkpoint directory for a model reference: a given directory as it is, or a
    named architecture's random checkpoint, written once into the cache."""
    if ref.path and ref.arch:
        raise ValueError(f"model names both a path ({ref.path}) and an arch ({ref.arch})")
    if ref.path:
        path = Path(ref.path).expanduser()
        if not path.is_dir():
            raise ValueError(f"model path {path} is not a directory")
        if not (path / "config.json").is_file():
            raise ValueError(f"model path {path} has no config.json")
        return path.absolute()
    if not ref.arch:
        raise ValueError("model names neither a path nor an arch")
    arch_config(ref.arch)
    models = cache_root() / "models"
    name = f"{ref.arch}-s{ref.seed}"
    final = models / name
    if (final / "config.json").is_file():
        return final
    models.mkdir(parents=True, exist_ok=True)
    with _locked(models / f".{name}.lock"):
        if (final / "config.json").is_file():
            return final
        # Holding the lock, any temp dir of this name is a crashed writer's leftover.
        for stale in models.glob(f".{name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if final.exists():
            shutil.rmtree(final)
        return write_checkpoint(ref.arch, final, seed=ref.seed)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m engine.checkpoints",
        description="Write an HF-format checkpoint with random weights of a named architecture.",
    )
    p.add_argument("--arch", required=True, help=f"one of: {', '.join(ARCHS)}")
    p.add_argument("--out", required=True, help="output directory (must not exist or be empty)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="bfloat16", help=f"one of: {', '.join(DTYPES)}")
    args = p.parse_args(argv)
    t0 = time.monotonic()
    try:
        config_for(args.arch, args.dtype)
        out = write_checkpoint(args.arch, args.out, seed=args.seed, dtype=args.dtype)
    except (ValueError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    files = sorted(out.glob("*.safetensors"))
    size = sum(f.stat().st_size for f in files)
    print(
        f"wrote {args.arch} (seed {args.seed}, {args.dtype}, {size / 1e9:.2f} GB in "
        f"{len(files)} file{'s' * (len(files) > 1)}) to {out} in {time.monotonic() - t0:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
