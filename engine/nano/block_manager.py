"""Paged KV blocks with reference counts and prefix caching.

A full block's hash chains its parent's hash with its own token ids, so equal hashes mean
equal prefixes; a hit is still verified against the stored token ids and parent hash. A
block is registered only once its K/V are computed (register()), so no sequence can hit a
block that a chunked prefill has not written yet. Freed blocks keep their hash until they
are reused: free blocks form an LRU list, and a hit on a free block takes it back.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict

from engine.nano.sequence import Sequence


def block_hash(parent: bytes, token_ids: list[int]) -> bytes:
    h = hashlib.blake2b(parent, digest_size=16)
    h.update(array("q", token_ids).tobytes())
    return h.digest()


class Block:
    __slots__ = ("block_id", "ref_count", "hash", "parent_hash", "token_ids")

    def __init__(self, block_id: int):
        self.block_id = block_id
        self.ref_count = 0
        self.hash: bytes | None = None
        self.parent_hash: bytes | None = None
        self.token_ids: tuple[int, ...] = ()


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True):
        if num_blocks < 1:
            raise ValueError("the KV cache needs at least one block")
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.blocks = [Block(i) for i in range(num_blocks)]
        self.free: OrderedDict[int, None] = OrderedDict.fromkeys(range(num_blocks))
        self.hash_to_block: dict[bytes, int] = {}
        self.num_hit_tokens = 0  # prefix-cache hits since start, in tokens

    def reset(self) -> None:
        """Back to the state of a fresh start: every block free in id order, the prefix
        cache empty. Only between generates: a block still held is an error."""
        held = self.num_blocks - len(self.free)
        if held:
            raise RuntimeError(f"reset with {held} KV block(s) still held")
        for b in self.blocks:
            b.hash, b.parent_hash, b.token_ids = None, None, ()
        self.free = OrderedDict.fromkeys(range(self.num_blocks))
        self.hash_to_block.clear()

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def num_free_blocks(self) -> int:
        return len(self.free)

    # -- prefix cache -------------------------------------------------------------------

    def _match(self, seq: Sequence) -> list[int]:
        """Cached blocks that hold seq's leading full blocks. The last token is never taken
        from the cache, so that a step computes at least one token and yields logits."""
        if not self.enable_prefix_caching:
            return []
        matched: list[int] = []
        parent = b""
        for i in range((len(seq) - 1) // self.block_size):
            tokens = seq.block_tokens(i)
            h = block_hash(parent, tokens)
            bid = self.hash_to_block.get(h)
            if bid is None:
                break
            b = self.blocks[bid]
            if b.parent_hash != parent or b.token_ids != tuple(tokens):
                break
            matched.append(bid)
            parent = h
        return matched

    def register(self, seq: Sequence) -> None:
        """Hash the full blocks of seq whose K/V are now computed."""
        if not self.enable_prefix_caching:
            return
        bs = self.block_size
        for i in range(seq.num_hashed_blocks, seq.num_computed_tokens // bs):
            b = self.blocks[seq.block_table[i]]
            parent = self.blocks[seq.block_table[i - 1]].hash if i else b""
            tokens = seq.block_tokens(i)
            h = block_hash(parent, tokens)
            if b.hash is not None and b.hash != h:  # a shared block is registered already
                raise AssertionError(f"block {b.block_id} changes its hash")
            b.hash, b.parent_hash, b.token_ids = h, parent, tuple(tokens)
            self.hash_to_block.setdefault(h, b.block_id)
        seq.num_hashed_blocks = max(seq.num_hashed_blocks, seq.num_computed_tokens // bs)

    # -- allocation ---------------------------------------------------------------------

    def _take_free(self) -> int:
        bid, _ = self.free.popitem(last=False)
        b = self.blocks[bid]
        if b.hash is not None and self.hash_to_block.get(b.hash) == bid:
            del self.hash_to_block[b.hash]
        b.hash, b.parent_hash, b.token_ids = None, None, ()
        b.ref_count = 1
        return bid

    def can_allocate(self, seq: Sequence, spare: int = 0) -> bool:
        """Whether seq's blocks can be given and `spare` blocks still stay free."""
        matched = self._match(seq)
        taken_from_free = sum(1 for bid in matched if self.blocks[bid].ref_count == 0)
        return seq.num_blocks - len(matched) + taken_from_free + spare <= len(self.free)

    def allocate(self, seq: Sequence) -> None:
        """Give a waiting sequence blocks for all its tokens, reusing cached ones."""
        assert not seq.block_table, "sequence already holds blocks"
        matched = self._match(seq)
        for bid in matched:
            b = self.blocks[bid]
            if b.ref_count == 0:
                del self.free[bid]
            b.ref_count += 1
        fresh = [self._take_free() for _ in range(seq.num_blocks - len(matched))]
        seq.block_table = matched + fresh
        seq.num_cached_tokens = seq.num_computed_tokens = len(matched) * self.block_size
        seq.num_hashed_blocks = len(matched)
        self.num_hit_tokens += seq.num_cached_tokens

    def deallocate(self, seq: Sequence) -> None:
        # Tail blocks go to the free list first, so they are reused before the prefix.
        for bid in reversed(seq.block_table):
            b = self.blocks[bid]
            b.ref_count -= 1
            assert b.ref_count >= 0
            if b.ref_count == 0:
                self.free[bid] = None
        seq.block_table = []
        seq.num_computed_tokens = seq.num_cached_tokens = seq.num_hashed_blocks = 0

    def needs_block(self, seq: Sequence) -> bool:
        """Whether seq's newest token lies past the blocks it holds."""
        return len(seq.block_table) * self.block_size < len(seq.token_ids)

    def can_append(self, seq: Sequence) -> bool:
        """Whether seq's newest token has (or can get) a slot."""
        return not self.needs_block(seq) or len(self.free) >= 1

    def append_slot(self, seq: Sequence) -> None:
        while len(seq.block_table) < seq.num_blocks:
            seq.block_table.append(self._take_free())
