"""Nano's kernels compiled ahead of time for named cards, on a machine without a GPU.

    python -m engine.nano.kernels.aot [--card "RTX 3090" ...] [--dtype bfloat16 ...]

For each card (kernels/card.py CARDS), dtype and architecture of engine/archs.py (the tiny
test models aside), and each KV-cache layout and block size, the kernel wrappers run on meta
tensors shaped and strided as the engine's forward step gives them, with the launch
configurations the card's choosers pick (kernels/choose.py); every distinct launch is
compiled by Triton for the card's architecture with the specialisations a launch on the
device would get. One JSON line per compiled kernel: its shared memory, registers and
spilled bytes, and the card's limit.

Uses Triton's internals (the JIT's argument binder, ASTSource) as Triton 3.9 has them, and
its own ptxas and cuobjdump. Run it where TRITON_INTERPRET is unset: under the interpreter
there is nothing to compile (tests/engine/nano/test_nano_kernels_aot.py runs it in a
subprocess).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from engine.archs import ARCHS
from engine.nano.kernels.card import CARDS, Card

DTYPES = ("bfloat16", "float16")


@dataclass(frozen=True)
class Compiled:
    card: str
    arch: int
    model: str
    dtype: str
    kernel: str
    constexprs: dict
    num_warps: int
    num_stages: int
    shared: int  # bytes of shared memory a program takes
    regs: int  # registers a thread takes
    spills: int  # bytes of local memory a thread takes (0: no spill)
    smem_limit: int  # the card's most for one program


def _resources(cubin: bytes) -> tuple[int, int]:
    """(registers, stack bytes) of the one function in a cubin, as cuobjdump reports them."""
    from triton import knobs

    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run([knobs.nvidia.cuobjdump.path, "-res-usage", f.name],
                             capture_output=True, text=True, check=True).stdout
    m = re.search(r"REG:(\d+) STACK:(\d+)", out)
    if m is None:
        raise RuntimeError(f"no resource usage in cuobjdump's output:\n{out}")
    return int(m.group(1)), int(m.group(2))


class Compiler:
    """Compiles launches for one card's architecture; launch.compiling_with(compiler)."""

    def __init__(self, card: Card):
        from triton.backends.compiler import GPUTarget
        from triton.compiler.compiler import make_backend

        self.card = card
        self.target = GPUTarget("cuda", card.arch, 32)
        self.backend = make_backend(self.target)
        self.cache: dict[str, tuple[str, dict, dict, object]] = {}  # models share launches
        self.compiled: list[tuple[str, dict, dict, object]] = []  # this model's

    def start_model(self) -> None:
        self.compiled = []

    def __call__(self, kernel, args: tuple, meta: dict) -> None:
        import triton
        from triton.compiler import ASTSource
        from triton.runtime.jit import create_function_from_signature

        # What JITFunction.run does before it compiles: the same binder, the same packing.
        binder = create_function_from_signature(kernel.signature, kernel.params, self.backend)
        bound, spec, opts = binder(*args, **meta)
        options, signature, constexprs, attrs = kernel._pack_args(
            self.backend, dict(meta), bound, spec, opts)
        key = repr((kernel.fn.__qualname__, signature, constexprs, attrs, options))
        if key not in self.cache:
            src = ASTSource(kernel, signature, constexprs, attrs)
            out = triton.compile(src, target=self.target, options=options.__dict__)
            names = {kernel.arg_names[i[0]]: v for i, v in constexprs.items()}
            self.cache[key] = (kernel.fn.__name__, names, options.__dict__, out)
        if self.cache[key] not in self.compiled:
            self.compiled.append(self.cache[key])


def _forward_launches(mcfg, dtype, configs, block_size: int, kv_layout: str) -> None:
    """Every kernel a forward step (prefill, decode in one part and in several) and its
    sampling launch for a model, on meta tensors: the caches are views of a layer's cache
    laid out as kv_layout lays it out (engine/nano/kv_layout.py)."""
    import torch

    from engine.nano.kernels.decode_attention import paged_decode_attention
    from engine.nano.kernels.prefill_attention import prefill_attention
    from engine.nano.kernels.reference import QKPrologue
    from engine.nano.kernels.rmsnorm import add_rms, add_rmsnorm
    from engine.nano.kernels.rotary import apply_rotary
    from engine.nano.kernels.sample import sample
    from engine.nano.kernels.silu_mul import silu_and_mul
    from engine.nano.kernels.store_kv import store_kv
    from engine.nano.kv_layout import block_shape, blocks_view

    meta = torch.device("meta")
    h, kvh, d = mcfg.num_attention_heads, mcfg.num_key_value_heads, mcfg.head_dim
    t, n = 64, 4  # tokens and sequences of a step: shapes, never values, reach the kernels

    def empty(*shape, dtype=dtype):
        return torch.empty(*shape, dtype=dtype, device=meta)

    x = empty(t, mcfg.hidden_size)
    weight = empty(mcfg.hidden_size)
    add_rmsnorm(x, None, weight, 1e-6)
    add_rmsnorm(x, x, weight, 1e-6)
    qkv = empty(t, (h + 2 * kvh) * d)
    q = qkv[:, : h * d].view(t, h, d)
    k = qkv[:, h * d : (h + kvh) * d].view(t, kvh, d)
    v = qkv[:, (h + kvh) * d :].view(t, kvh, d)
    if mcfg.qk_norm:
        add_rmsnorm(q, None, empty(d), 1e-6)
    positions = empty(t, dtype=torch.long)
    apply_rotary(positions, q, k, empty(4096, d, dtype=torch.float32),
                 empty(4096, d, dtype=torch.float32))
    block = block_shape(kv_layout, block_size, kvh, d)
    kc, vc = (blocks_view(empty(1024, *block), kv_layout) for _ in "kv")
    store_kv(k, v, kc, vc, empty(t, dtype=torch.long))
    tables = empty(n, 16, dtype=torch.int32)
    lens = empty(n, dtype=torch.int32)
    prefill_attention(q, kc, vc, tables, empty(n + 1, dtype=torch.int32), lens, t, d**-0.5,
                      config=configs.prefill)
    for splits in (1, 4):
        paged_decode_attention(empty(n, h, d), kc, vc, tables, lens, d**-0.5, splits,
                               config=configs.decode)
    silu_and_mul(empty(t, 2 * mcfg.intermediate_size))
    # fuse_norm_linear's launches: the norms' sums and scales, the projections' epilogues.
    add_rms(x, None, 1e-6)
    add_rms(x, x, 1e-6)
    scale = empty(t, dtype=torch.float32)
    bias = empty(kvh * d) if mcfg.qkv_bias else None
    norm = empty(d) if mcfg.qk_norm else None
    apply_rotary(positions, q, k, empty(4096, d, dtype=torch.float32),
                 empty(4096, d, dtype=torch.float32),
                 QKPrologue(scale, empty(h * d) if mcfg.qkv_bias else None, bias, norm, norm,
                            1e-6))
    store_kv(k, v, kc, vc, empty(t, dtype=torch.long), scale, bias)
    silu_and_mul(empty(t, 2 * mcfg.intermediate_size), scale)
    sample(empty(n, mcfg.vocab_size), empty(n, dtype=torch.float32), seed=1)


def compile_all(cards: list[Card], dtypes: tuple[str, ...] = DTYPES) -> Iterator[Compiled]:
    import torch

    from engine.nano.config import ModelConfig
    from engine.nano.kernels.choose import choose
    from engine.nano.kernels.launch import compiling_with
    from engine.nano.kv_layout import KV_LAYOUTS
    from engine.nano.model_runner import BLOCK_SIZE, TIGHT_BLOCK_SIZE

    models = {name: ModelConfig.from_dict(cfg) for name, cfg in ARCHS.items()
              if not name.startswith("tiny")}
    for card in cards:
        for dtype in dtypes:
            compiler = Compiler(card)
            resources: dict[int, tuple[int, int]] = {}  # by id: the compiler keeps them alive
            for name, mcfg in models.items():
                compiler.start_model()
                with compiling_with(compiler):
                    for kv_layout, block_size in itertools.product(
                            KV_LAYOUTS, (BLOCK_SIZE, TIGHT_BLOCK_SIZE)):
                        configs = choose(card, mcfg, getattr(torch, dtype).itemsize, kv_layout)
                        _forward_launches(mcfg, getattr(torch, dtype), configs, block_size,
                                          kv_layout)
                for kernel, constexprs, options, out in compiler.compiled:
                    if id(out) not in resources:
                        resources[id(out)] = _resources(out.asm["cubin"])
                    regs, spills = resources[id(out)]
                    yield Compiled(card.name, card.arch, name, dtype, kernel, constexprs,
                                   options["num_warps"], options["num_stages"],
                                   out.metadata.shared, regs, spills, card.smem_per_block)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--card", action="append", choices=sorted(CARDS),
                   help="a card to compile for (repeatable; default: every one)")
    p.add_argument("--dtype", action="append", choices=DTYPES)
    a = p.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("error: TRITON_INTERPRET=1: the interpreter compiles nothing; unset it",
              file=sys.stderr)
        return 2
    cards = [CARDS[c] for c in a.card] if a.card else list(CARDS.values())
    for c in compile_all(cards, tuple(a.dtype) if a.dtype else DTYPES):
        print(json.dumps(asdict(c)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
