"""Launch configurations of nano's paged decode attention at the standard workload's shapes,
for each KV-cache layout (engine/nano/kv_layout.py).

One layer of Qwen2-1.5B (12 query heads, 2 KV heads, head dim 128, bf16, blocks of 256
tokens scattered over a cache far larger than L2), a decode step at batch 256, 128 and 64
with context lengths drawn as in the middle of the standard workload (prompt 100-1024 plus
half of an output of 100-1024). Each layout holds the same values; each configuration
(BLOCK_N, warps, pipeline stages, splits) is timed in a CUDA graph
(triton.testing.do_bench_cudagraph), checked against the token layout's first result, and
reported as µs a call and the bandwidth it reaches on the bytes of K and V it must read.
Last, for each layout, the tile (BLOCK_N, warps, stages) fastest over the three batches at
the split rule's counts: the one to set in decode_attention.MEASURED. About three minutes
on an H200.

    python bench/decode_attention_tune.py --out $OUT
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import random
import sys
from dataclasses import replace
from pathlib import Path

import torch
import triton
from triton.testing import do_bench_cudagraph

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.nano.kernels import decode_attention as da  # noqa: E402
from engine.nano.kernels.card import Card  # noqa: E402
from engine.nano.kv_layout import KV_LAYOUTS, block_shape, blocks_view  # noqa: E402

HEADS, KV_HEADS, HEAD_DIM, BLOCK_SIZE = 12, 2, 128, 256
TILES = list(itertools.product((32, 64, 128), (4, 8), (2, 3, 4)))  # BLOCK_N, warps, stages


def shapes(batch: int, seed: int = 0):
    """q, one cache a layout (the same values), block table, context lengths, KV bytes."""
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
    caches = {}
    for layout in KV_LAYOUTS:
        shape = (num_blocks, *block_shape(layout, BLOCK_SIZE, KV_HEADS, HEAD_DIM))
        kc, vc = (blocks_view(torch.empty(shape, dtype=torch.bfloat16, device=dev), layout)
                  for _ in "kv")
        if caches:  # the token layout's values
            kc.copy_(caches["token"][0])
            vc.copy_(caches["token"][1])
        else:
            kc.normal_()
            vc.normal_()
        caches[layout] = (kc, vc)
    q = torch.randn(batch, HEADS, HEAD_DIM, dtype=torch.bfloat16, device=dev)
    ctx = torch.tensor(lens, dtype=torch.int32, device=dev)
    kv_bytes = sum(lens) * KV_HEADS * HEAD_DIM * 2 * 2
    return q, caches, table.to(dev), ctx, kv_bytes


def _line(r: dict) -> str:
    return (f"BLOCK_N {r['block_n']:3d} warps {r['warps']} stages {r['stages']} splits "
            f"{r['splits']}: {r['us']:7.1f} µs  {r['tb_s']:.2f} TB/s  err {r['max_err']:.1e}"
            + ("  (current)" if r["current"] else ""))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--batches", default="256,128,64")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    card = Card.of(0)
    chosen = {lay: da.decode_config(card, HEAD_DIM, HEADS // KV_HEADS, 2, lay)
              for lay in KV_LAYOUTS}
    print(card.name, f"{card.num_sms} SMs; chosen: {chosen}", flush=True)
    rows = []
    for batch in (int(b) for b in a.batches.split(",")):
        q, caches, bt, ctx, kv_bytes = shapes(batch)
        want = None
        for layout in KV_LAYOUTS:
            kc, vc = caches[layout]
            cur = chosen[layout]
            rule = cur.num_splits(batch, KV_HEADS, int(ctx.max()))
            for (block_n, warps, stages), splits in itertools.product(
                    TILES, sorted({1, 2, 4, rule})):
                config = replace(cur, block_n=block_n, num_warps=warps, num_stages=stages)
                call = functools.partial(da.paged_decode_attention, q, kc, vc, bt, ctx,
                                         HEAD_DIM**-0.5, splits, config=config)
                try:
                    out = call()
                    if want is None:
                        want = out.float()
                    err = (out.float() - want).abs().max().item()
                    us = do_bench_cudagraph(call, rep=40) * 1e3
                except Exception as e:  # out of shared memory and the like: not a candidate
                    print(f"{layout} B={batch} n={block_n} w={warps} s={stages} sp={splits}: "
                          f"{type(e).__name__}: {str(e)[:100]}", flush=True)
                    continue
                rows.append(dict(
                    layout=layout, batch=batch, block_n=block_n, warps=warps, stages=stages,
                    splits=splits, rule_splits=splits == rule, us=us,
                    tb_s=kv_bytes / us / 1e6, max_err=err, kv_mb=kv_bytes / 1e6,
                    current=(block_n, warps, stages) == (cur.block_n, cur.num_warps,
                                                         cur.num_stages) and splits == rule))
            mine = sorted((r for r in rows if (r["batch"], r["layout"]) == (batch, layout)),
                          key=lambda r: r["us"])
            print(f"\n{layout} layout, batch {batch}: {sum(ctx.tolist()):,} context tokens, "
                  f"{kv_bytes / 1e6:.1f} MB of K and V a layer; the rule's splits {rule}")
            for r in mine[:6] + [r for r in mine[6:] if r["current"]]:
                print("  " + _line(r), flush=True)
    with open(a.out / "decode_attention_tune.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    batches = {r["batch"] for r in rows}
    print("\nFastest tile a layout over batches", sorted(batches), "at the rule's splits:")
    for layout in KV_LAYOUTS:
        total: dict[tuple, float] = {}
        for r in rows:
            if r["layout"] == layout and r["rule_splits"]:
                key = (r["block_n"], r["warps"], r["stages"])
                total[key] = total.get(key, 0.0) + r["us"]
        full = {k: v for k, v in total.items()
                if sum(1 for r in rows if r["layout"] == layout and r["rule_splits"]
                       and (r["block_n"], r["warps"], r["stages"]) == k) == len(batches)}
        if not full:
            continue
        best = min(full, key=full.get)
        cur = chosen[layout]
        now = full.get((cur.block_n, cur.num_warps, cur.num_stages))
        print(f"  {layout}: BLOCK_N {best[0]} warps {best[1]} stages {best[2]}: "
              f"{full[best]:.1f} µs in all (the current tile: "
              + (f"{now:.1f} µs)" if now is not None else "not measured)"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
