"""Launch configurations of nano's paged decode attention at the standard workload's shapes.

One layer of Qwen2-1.5B (12 query heads, 2 KV heads, head dim 128, bf16, blocks of 256
tokens scattered over a cache far larger than L2), a decode step at batch 256, 128 and 64 with
context lengths drawn as in the middle of the standard workload (prompt 100-1024 plus half
of an output of 100-1024). Each configuration (BLOCK_N, warps, pipeline stages, splits) is
timed in a CUDA graph (triton.testing.do_bench_cudagraph) and reported as µs a call and the
bandwidth it reaches on the KV bytes it must read.

    python bench/decode_attention_tune.py --out $OUT
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import random
import sys
from pathlib import Path

import torch
import triton
from triton.testing import do_bench_cudagraph

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.nano.kernels import decode_attention as da  # noqa: E402
from engine.nano.kernels.card import Card  # noqa: E402

HEADS, KV_HEADS, HEAD_DIM, BLOCK_SIZE = 12, 2, 128, 256


def shapes(batch: int, seed: int = 0):
    rng = random.Random(seed)
    lens = [rng.randint(100, 1024) + rng.randint(100, 1024) // 2 for _ in range(batch)]
    blocks = [triton.cdiv(n, BLOCK_SIZE) for n in lens]
    num_blocks = max(4 * sum(blocks), 4096)  # ~1 GiB a layer: nothing stays in L2
    order = torch.randperm(num_blocks)[: sum(blocks)].tolist()
    table = torch.zeros(batch, max(blocks), dtype=torch.int32)
    at = 0
    for i, nb in enumerate(blocks):
        table[i, :nb] = torch.tensor(order[at:at + nb])
        at += nb
    dev = "cuda"
    kc = torch.randn(num_blocks, BLOCK_SIZE, KV_HEADS, HEAD_DIM, dtype=torch.bfloat16, device=dev)
    vc = torch.randn_like(kc)
    q = torch.randn(batch, HEADS, HEAD_DIM, dtype=torch.bfloat16, device=dev)
    ctx = torch.tensor(lens, dtype=torch.int32, device=dev)
    kv_bytes = sum(lens) * KV_HEADS * HEAD_DIM * 2 * 2
    return q, kc, vc, table.to(dev), ctx, kv_bytes


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--batches", default="256,128,64")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    card = Card.of(0)
    chosen = da.decode_config(card, HEAD_DIM, HEADS // KV_HEADS, 2)
    print(card.name, f"{card.num_sms} SMs; chosen: {chosen}", flush=True)
    rows = []
    for batch in (int(b) for b in a.batches.split(",")):
        q, kc, vc, bt, ctx, kv_bytes = shapes(batch)
        default_splits = chosen.num_splits(batch, KV_HEADS, int(ctx.max()))
        want = None
        for block_n, warps, stages, splits in itertools.product(
                (32, 64, 128), (4, 8), (1, 2, 3, 4), sorted({1, 2, 4, default_splits})):
            call = functools.partial(da.paged_decode_attention, q, kc, vc, bt, ctx,
                                     HEAD_DIM**-0.5, splits,
                                     config=da.DecodeConfig(block_n, warps, stages))
            try:
                out = call()
                if want is None:
                    want = out.float()
                err = (out.float() - want).abs().max().item()
                us = do_bench_cudagraph(call, rep=50) * 1e3
            except Exception as e:  # out of shared memory and the like: not a candidate
                print(f"B={batch} n={block_n} w={warps} s={stages} sp={splits}: "
                      f"{type(e).__name__}: {str(e)[:100]}", flush=True)
                continue
            current = (block_n, warps, stages) == (
                chosen.block_n, chosen.num_warps, chosen.num_stages) and splits == default_splits
            rows.append(dict(batch=batch, block_n=block_n, warps=warps, stages=stages,
                             splits=splits, us=us, tb_s=kv_bytes / us / 1e6, max_err=err,
                             current=current, kv_mb=kv_bytes / 1e6))
        mine = sorted((r for r in rows if r["batch"] == batch), key=lambda r: r["us"])
        print(f"\nbatch {batch}: {sum(ctx.tolist()):,} context tokens, "
              f"{kv_bytes / 1e6:.1f} MB of K and V a layer; default splits {default_splits}")
        for r in mine[:8] + [r for r in mine if r["current"]]:
            print(f"  BLOCK_N {r['block_n']:3d} warps {r['warps']} stages {r['stages']} "
                  f"splits {r['splits']}: {r['us']:7.1f} µs  {r['tb_s']:.2f} TB/s  "
                  f"err {r['max_err']:.1e}{'  (current)' if r['current'] else ''}", flush=True)
    (a.out / "decode_attention_tune.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
