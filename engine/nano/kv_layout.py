"""The paged KV cache's memory layout, decided here alone.

In memory the cache is one tensor, [2 (K, V), layers, num_blocks, *block_shape]. Every
reader and writer (kernels/store_kv.py, decode and prefill attention, the torch references
in kernels/reference.py) sees a layer's K or V as a [num_blocks, block_size, KVH, D] view
and addresses it through that view's strides only, so a layout is a block shape and the
view that puts it in that order:

  token  [block_size, KVH, D]: a token's K (or V) for every KV head together; one KV head's
         tokens in a block are runs of D elements strided by KVH * D.
  head   [KVH, block_size, D]: one KV head's tokens in a block are one contiguous run of
         block_size * D elements, which decode attention reads a tile at a time.

No torch import: engine/nano/config.py reads KV_LAYOUTS for the kv_layout option.
"""

from __future__ import annotations

KV_LAYOUTS = ("token", "head")


def block_shape(layout: str, block_size: int, num_kv_heads: int, head_dim: int
                ) -> tuple[int, int, int]:
    """One block of one layer's K (or V) as it lies in memory."""
    if layout == "token":
        return (block_size, num_kv_heads, head_dim)
    if layout == "head":
        return (num_kv_heads, block_size, head_dim)
    raise ValueError(f"unknown kv_layout {layout!r} (known: {', '.join(KV_LAYOUTS)})")


def blocks_view(stored, layout: str):
    """A layer's K (or V), [num_blocks, *block_shape] in memory, as the
    [num_blocks, block_size, KVH, D] view that readers and writers address."""
    return stored.transpose(1, 2) if layout == "head" else stored
