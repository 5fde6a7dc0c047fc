"""Every kernel launch the engine makes, compiled ahead of time for sm_80, sm_86, sm_89 and
sm_90 on this machine (no GPU): each fits its card's shared memory, spills no register, and
the decode kernel's footprint model (decode_attention.smem_bytes) gives the occupancy the
compiled kernel has. The compile runs in a subprocess: this package's conftest forces the
interpreter, under which Triton compiles nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.archs import ARCHS
from engine.nano.config import ModelConfig
from engine.nano.kernels.card import CARDS
from engine.nano.model_runner import BLOCK_SIZE, TIGHT_BLOCK_SIZE
from tests.engine.nano.conftest import needs_triton

pytestmark = [needs_triton, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[3]
KERNELS = {"_add_rmsnorm_kernel", "_rotary_kernel", "_store_kv_kernel", "_prefill_kernel",
           "_decode_split_kernel", "_decode_combine_kernel", "_silu_mul_kernel",
           "_sample_chunk_kernel", "_sample_pick_kernel"}


@pytest.fixture(scope="module")
def compiled() -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(ROOT)
    p = subprocess.run([sys.executable, "-W", "ignore", "-m", "engine.nano.kernels.aot"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    assert p.returncode == 0, p.stderr[-4000:]
    return [json.loads(line) for line in p.stdout.splitlines()]


@pytest.mark.timeout(1600)
def test_every_launch_fits_its_card(compiled):
    models = {n for n in ARCHS if not n.startswith("tiny")}
    seen = {(r["card"], r["dtype"], r["model"]) for r in compiled}
    assert seen == {(c, d, m) for c in CARDS for d in ("bfloat16", "float16") for m in models}
    for key in seen:
        kernels = [r["kernel"] for r in compiled if (r["card"], r["dtype"], r["model"]) == key]
        assert set(kernels) == KERNELS, key
        # One part and several, for each block size the engine may choose.
        assert kernels.count("_decode_split_kernel") == 2 * 2, key
        blocks = {r["constexprs"]["BLOCK_SIZE"] for r in compiled
                  if (r["card"], r["dtype"], r["model"]) == key and "BLOCK_SIZE" in r["constexprs"]}
        assert blocks == {BLOCK_SIZE, TIGHT_BLOCK_SIZE}, key
    assert {r["arch"] for r in compiled} == {80, 86, 89, 90}
    for r in compiled:
        where = f"{r['kernel']} {r['constexprs']} for {r['card']} in {r['dtype']}"
        assert r["shared"] <= r["smem_limit"] == CARDS[r["card"]].smem_per_block, where
        assert r["spills"] == 0, f"{where} spills {r['spills']} bytes a thread"


@pytest.mark.timeout(1600)
def test_decode_footprint_matches_the_compiler(compiled):
    from engine.nano.kernels.choose import choose
    from engine.nano.kernels.decode_attention import smem_bytes

    splits = [r for r in compiled if r["kernel"] == "_decode_split_kernel"]
    for r in splits:
        card = CARDS[r["card"]]
        c = r["constexprs"]
        chosen = choose(card, ModelConfig.from_dict(ARCHS[r["model"]]),
                        getattr(torch, r["dtype"]).itemsize).decode
        assert (c["BLOCK_N"], r["num_warps"], r["num_stages"]) == (
            chosen.block_n, chosen.num_warps, chosen.num_stages)
        estimate = smem_bytes(c["BLOCK_N"], c["BLOCK_D"], c["BLOCK_H"], r["num_stages"], 2)
        where = (f"{r['card']} {r['model']} {r['dtype']}: estimate {estimate}, "
                 f"compiled {r['shared']}")
        assert estimate >= r["shared"], where
        fit = card.programs_per_sm(r["shared"], r["num_warps"])
        assert card.programs_per_sm(estimate, r["num_warps"]) == fit, where
        # The split rule never aims at more programs an SM than the registers hold.
        aim = chosen.slots // card.num_sms
        assert aim <= min(fit, card.programs_by_registers(r["regs"], r["num_warps"])), where
    # The figure: about 39 KB a program at head dim 128 on a 3090, two an SM.
    r = next(r for r in splits if r["card"] == "RTX 3090" and r["constexprs"]["HEAD_DIM"] == 128)
    assert 38_000 < r["shared"] < 40_000
    assert CARDS["RTX 3090"].programs_per_sm(r["shared"], r["num_warps"]) == 2
