"""Load HF safetensors into a model, accounting for every tensor and every parameter.

Each checkpoint tensor must land in exactly one parameter (or one shard of a merged
parameter) of the right shape, and every parameter (every shard) must be filled. Anything
else fails with one LoadError that names each offending tensor.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn


class LoadError(ValueError):
    pass


def checkpoint_files(model_dir: str | Path) -> list[Path]:
    d = Path(model_dir)
    index = d / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        missing = [n for n in names if not (d / n).is_file()]
        if missing:
            raise LoadError(f"{index} names missing shard files: {missing}")
        return [d / n for n in names]
    files = sorted(d.glob("*.safetensors"))
    if not files:
        raise LoadError(f"no *.safetensors files in {d}")
    return files


def _target(name: str, packed: dict[str, tuple[str, int]]) -> tuple[str, int | None]:
    parts = name.split(".")
    for i, part in enumerate(parts):
        if part in packed:
            merged, shard = packed[part]
            return ".".join(parts[:i] + [merged] + parts[i + 1 :]), shard
    return name, None


@torch.no_grad()
def load_weights(model: nn.Module, model_dir: str | Path) -> None:
    packed: dict[str, tuple[str, int]] = getattr(model, "packed_modules", {})
    params = dict(model.named_parameters())  # tied parameters appear once
    tied_names = {
        n for n, _ in model.named_parameters(remove_duplicate=False) if n not in params
    }
    # What must be filled: (parameter, shard or None).
    expected = set()
    for pname, p in params.items():
        sizes = getattr(p, "shard_sizes", None)
        expected |= {(pname, i) for i in range(len(sizes))} if sizes else {(pname, None)}
    loaded: dict[tuple[str, int | None], str] = {}
    errors: list[str] = []
    tied_copies: list[tuple[str, torch.Tensor]] = []
    device = next(model.parameters()).device
    dev = "cpu"
    if device.type == "cuda":
        dev = f"cuda:{torch.cuda.current_device() if device.index is None else device.index}"
    for path in checkpoint_files(model_dir):
        with safe_open(str(path), framework="pt", device=dev) as f:
            for name in f.keys():  # noqa: SIM118 (safe_open has no __iter__)
                if name in tied_names:  # e.g. lm_head.weight stored beside a tied embedding
                    tied_copies.append((name, f.get_tensor(name)))
                    continue
                pname, shard = _target(name, packed)
                p = params.get(pname)
                if p is None:
                    errors.append(f"unexpected tensor {name!r} (no parameter {pname!r})")
                    continue
                if (pname, shard) not in expected:
                    errors.append(f"unexpected tensor {name!r} for parameter {pname!r}")
                    continue
                if (pname, shard) in loaded:
                    errors.append(f"tensor {name!r} appears twice ({loaded[(pname, shard)]})")
                    continue
                dest = p.data
                if shard is not None:
                    sizes = p.shard_sizes
                    dest = dest.narrow(0, sum(sizes[:shard]), sizes[shard])
                shape = tuple(f.get_slice(name).get_shape())
                if shape != tuple(dest.shape):
                    errors.append(
                        f"tensor {name!r} has shape {list(shape)}, expected {list(dest.shape)}"
                    )
                    continue
                dest.copy_(f.get_tensor(name))
                loaded[(pname, shard)] = f"{path.name}:{name}"
    inverse = {v: k for k, v in packed.items()}
    for pname, shard in sorted(expected - loaded.keys(), key=str):
        if shard is None:
            errors.append(f"missing tensor {pname!r}")
        else:
            merged = pname.split(".")[-2]
            ckpt = pname.replace(f".{merged}.", f".{inverse[(merged, shard)]}.")
            errors.append(f"missing tensor {ckpt!r} (shard {shard} of {pname!r})")
    state = dict(model.named_parameters(remove_duplicate=False))
    for name, t in tied_copies:
        if not errors and not torch.equal(t.to(state[name].dtype), state[name].data):
            errors.append(f"tensor {name!r} differs from the weight the config ties it to")
    if errors:
        more = f"; ... {len(errors) - 20} more" if len(errors) > 20 else ""
        shown = "; ".join(errors[:20]) + more
        raise LoadError(f"checkpoint {model_dir} does not fit the model: {shown}")
