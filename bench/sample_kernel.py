"""The sampling kernel's time on one GPU: the vocabulary cut into chunks (the default), against
one program a row (chunk >= vocabulary, the kernel's earlier shape), at Qwen2's vocabulary.

    python bench/sample_kernel.py [--rows 64,256] [--vocab 151936]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import triton

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.nano.kernels.sample import BLOCK, CHUNK, sample  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", default="64,256")
    p.add_argument("--vocab", type=int, default=151936)
    a = p.parse_args()
    whole = triton.cdiv(a.vocab, BLOCK) * BLOCK
    for rows in [int(r) for r in a.rows.split(",")]:
        logits = torch.randn(rows, a.vocab, device="cuda", dtype=torch.bfloat16)
        temps = torch.full((rows,), 0.6, device="cuda")
        same = torch.equal(sample(logits, temps, 7, CHUNK), sample(logits, temps, 7, whole))
        for name, chunk in (("chunked", CHUNK), ("row a program", whole)):
            ms = triton.testing.do_bench(
                lambda x=logits, t=temps, c=chunk: sample(x, t, 7, c), rep=200)
            print(f"rows {rows:4d} {name:14s} {1e3 * ms:8.1f} µs   same tokens: {same}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
