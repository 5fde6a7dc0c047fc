from __future__ import annotations

import pytest

from engine.nano.block_manager import BlockManager, block_hash
from engine.nano.sampling import SamplingParams
from engine.nano.sequence import Sequence

BS = 4


def seq(tokens: list[int]) -> Sequence:
    return Sequence(tokens, SamplingParams(), BS)


def computed(bm: BlockManager, s: Sequence) -> None:
    """As if a step computed every token but the last."""
    s.num_computed_tokens = len(s) - 1
    bm.register(s)


def test_allocate_and_free_counts():
    bm = BlockManager(8, BS)
    a = seq(list(range(10)))  # 3 blocks
    assert bm.can_allocate(a)
    bm.allocate(a)
    assert len(a.block_table) == 3 and bm.num_free_blocks == 5
    assert a.num_cached_tokens == 0
    bm.deallocate(a)
    assert bm.num_free_blocks == 8 and a.block_table == []


def test_can_allocate_refuses_when_full():
    bm = BlockManager(3, BS)
    bm.allocate(seq(list(range(8))))
    assert not bm.can_allocate(seq(list(range(100, 106))))
    assert bm.can_allocate(seq([1, 2, 3]))


def test_prefix_hit_shares_blocks_and_counts_refs():
    bm = BlockManager(10, BS)
    a = seq(list(range(10)))
    bm.allocate(a)
    computed(bm, a)  # blocks 0 and 1 full and computed, block 2 partial
    b = seq(list(range(8)) + [99, 98, 97])
    bm.allocate(b)
    assert b.block_table[:2] == a.block_table[:2]
    assert b.num_cached_tokens == b.num_computed_tokens == 8
    assert b.block_table[2] != a.block_table[2]
    assert bm.blocks[a.block_table[0]].ref_count == 2
    bm.deallocate(a)
    assert bm.blocks[b.block_table[0]].ref_count == 1
    assert bm.num_hit_tokens == 8


def test_hit_never_covers_the_last_token():
    bm = BlockManager(10, BS)
    a = seq(list(range(9)))
    bm.allocate(a)
    computed(bm, a)
    b = seq(list(range(8)))  # two full blocks, both cached: the last must be recomputed
    bm.allocate(b)
    assert b.num_cached_tokens == 4
    assert b.num_computed_tokens < len(b)


def test_uncomputed_blocks_are_not_hit():
    bm = BlockManager(10, BS)
    a = seq(list(range(12)))
    bm.allocate(a)  # nothing computed yet (a chunked prefill in progress)
    a.num_computed_tokens = 4
    bm.register(a)
    b = seq(list(range(12)))
    bm.allocate(b)
    assert b.num_cached_tokens == 4


def test_freed_blocks_stay_cached_until_reused():
    bm = BlockManager(4, BS)
    a = seq(list(range(9)))
    bm.allocate(a)
    computed(bm, a)
    bm.deallocate(a)
    assert bm.num_free_blocks == 4
    b = seq(list(range(9)))
    assert bm.can_allocate(b)
    bm.allocate(b)
    assert b.num_cached_tokens == 8 and bm.num_free_blocks == 1
    bm.deallocate(b)
    # Fill the cache with other content: the old blocks get evicted (tail first).
    c = seq(list(range(50, 66)))
    bm.allocate(c)
    assert bm.num_free_blocks == 0
    bm.deallocate(c)
    d = seq(list(range(9)))
    bm.allocate(d)
    assert d.num_cached_tokens == 0


def test_hits_are_verified_by_token_ids():
    bm = BlockManager(10, BS)
    a = seq(list(range(9)))
    bm.allocate(a)
    computed(bm, a)
    # Corrupt the stored tokens as a hash collision would look: the hit must be refused.
    h = block_hash(b"", list(range(4)))
    bm.blocks[bm.hash_to_block[h]].token_ids = (7, 7, 7, 7)
    b = seq(list(range(9)))
    bm.allocate(b)
    assert b.num_cached_tokens == 0


def test_chain_depends_on_the_prefix():
    bm = BlockManager(10, BS)
    a = seq([1, 2, 3, 4, 5, 6, 7, 8, 0])
    bm.allocate(a)
    computed(bm, a)
    b = seq([9, 9, 9, 9, 5, 6, 7, 8, 0])  # same second block, different first block
    bm.allocate(b)
    assert b.num_cached_tokens == 0


def test_append_slot_allocates_on_block_boundary():
    bm = BlockManager(3, BS)
    a = seq([1, 2, 3, 4])
    bm.allocate(a)
    assert len(a.block_table) == 1
    a.token_ids.append(5)
    assert bm.can_append(a)
    bm.append_slot(a)
    assert len(a.block_table) == 2
    a.token_ids.append(6)
    bm.append_slot(a)  # same block
    assert len(a.block_table) == 2 and bm.num_free_blocks == 1


def test_prefix_caching_off():
    bm = BlockManager(10, BS, enable_prefix_caching=False)
    a = seq(list(range(9)))
    bm.allocate(a)
    computed(bm, a)
    b = seq(list(range(9)))
    bm.allocate(b)
    assert b.num_cached_tokens == 0 and not bm.hash_to_block


def test_needs_a_block():
    with pytest.raises(ValueError):
        BlockManager(0, BS)


def test_reset_empties_the_prefix_cache_and_restores_the_first_free_order():
    bm = BlockManager(8, BS)
    a = seq(list(range(10)))
    bm.allocate(a)
    computed(bm, a)
    with pytest.raises(RuntimeError, match="3 KV block"):
        bm.reset()  # a sequence still holds its blocks
    bm.deallocate(a)
    b = seq(list(range(10)))
    assert bm.can_allocate(b) and bm._match(b)  # a's prefix is cached
    bm.reset()
    assert not bm._match(b) and not bm.hash_to_block
    assert list(bm.free) == list(range(8))
    bm.allocate(b)
    assert b.block_table == [0, 1, 2] and b.num_cached_tokens == 0
