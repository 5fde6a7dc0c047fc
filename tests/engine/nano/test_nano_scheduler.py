"""Scheduler with the real block manager and a fake model (a fixed next token)."""

from __future__ import annotations

import random

import pytest

from engine.nano.block_manager import BlockManager
from engine.nano.sampling import SamplingParams
from engine.nano.scheduler import Scheduler
from engine.nano.sequence import Sequence, Status

BS = 4


def make(num_blocks=16, max_num_seqs=4, budget=64, max_model_len=32, caching=True, eos=(),
         lookahead=0):
    bm = BlockManager(num_blocks, BS, caching)
    return Scheduler(bm, max_num_seqs, budget, max_model_len, eos, lookahead)


def seq(n: int, max_tokens: int = 4, start: int = 0, ignore_eos: bool = True) -> Sequence:
    return Sequence(list(range(start, start + n)), SamplingParams(0, max_tokens, ignore_eos), BS)


def step(s: Scheduler, token: int = 7):
    """One step as LLM._run_steps records it with its tokens known at once: advance() when
    it is queued, complete() with its sampled tokens."""
    batch = s.schedule()
    n = sum(1 for i in range(len(batch.seqs)) if batch.samples(i))
    s.advance(batch)
    s.complete(batch, [token] * n, 0.0)
    return batch


def run_all(s: Scheduler, limit: int = 10_000) -> int:
    steps = 0
    while not s.is_finished():
        step(s)
        steps += 1
        assert steps < limit, "no progress"
    return steps


def test_prefill_then_decode_until_max_tokens():
    s = make()
    a, b = seq(5, 3), seq(9, 2, start=100)
    s.add(a)
    s.add(b)
    batch = step(s)
    assert batch.is_prefill and batch.num_new_tokens == [5, 9]
    assert a.completion_token_ids == [7]
    batch = step(s)
    assert not batch.is_prefill and batch.num_new_tokens == [1, 1]
    run_all(s)
    assert a.completion_token_ids == [7, 7, 7] and b.completion_token_ids == [7, 7]
    assert a.status == b.status == Status.FINISHED
    assert s.bm.num_free_blocks == 16


def test_eos_stops_unless_ignored():
    s = make(eos=(7,))
    a = seq(3, 5, ignore_eos=False)
    b = seq(3, 5, start=50, ignore_eos=True)
    s.add(a)
    s.add(b)
    run_all(s)
    assert a.completion_token_ids == [7]
    assert len(b.completion_token_ids) == 5


def test_token_budget_and_max_num_seqs():
    s = make(num_blocks=64, max_num_seqs=3, budget=20)
    for i in range(5):
        s.add(seq(8, 2, start=10 * i))
    batch = step(s)
    # 8 + 8 fit; the third is chunked to the 4 tokens left.
    assert batch.num_new_tokens == [8, 8, 4]
    assert [batch.samples(i) for i in range(3)] == [True, True, False]
    batch = step(s)  # the chunked prefill continues before any decode; seq limit reached
    assert batch.is_prefill and batch.num_new_tokens == [4]
    assert len(s.running) == 3
    run_all(s)


def test_chunked_prefill_of_a_long_prompt():
    s = make(num_blocks=16, budget=5, max_model_len=40)
    a = seq(23, 2)
    s.add(a)
    chunks = []
    while a.num_completion_tokens == 0:
        batch = step(s)
        assert batch.is_prefill
        chunks.append(batch.num_new_tokens[0])
    assert chunks == [5, 5, 5, 5, 3]
    run_all(s)
    assert a.completion_token_ids == [7, 7]


def test_preemption_by_recompute_when_blocks_run_out():
    s = make(num_blocks=6, max_num_seqs=4, max_model_len=24)
    a = seq(8, 12)
    b = seq(8, 12, start=100)
    s.add(a)
    s.add(b)
    run_all(s)
    assert s.num_preemptions > 0
    assert b.num_preemptions > 0  # the newest is preempted first
    assert a.completion_token_ids == [7] * 12 and b.completion_token_ids == [7] * 12
    assert s.bm.num_free_blocks == 6


def test_lookahead_admits_only_what_can_grow():
    """A tight cache: without lookahead every prompt is admitted into the last free blocks
    and the newest are preempted as the others grow, their prefills wasted."""
    outs, preemptions, prefilled = [], [], []
    for lookahead in (0, 16):
        s = make(num_blocks=10, max_num_seqs=4, max_model_len=24, lookahead=lookahead)
        seqs = [seq(6, 10, start=100 * i) for i in range(4)]
        for sq in seqs:
            s.add(sq)
        tokens = 0
        while not s.is_finished():
            batch = step(s)
            tokens += batch.num_tokens if batch.is_prefill else 0
        outs.append([sq.completion_token_ids for sq in seqs])
        preemptions.append(s.num_preemptions)
        prefilled.append(tokens)
        assert s.bm.num_free_blocks == 10
    assert outs[0] == outs[1] == [[7] * 10] * 4
    assert preemptions[1] == 0 < preemptions[0]
    assert prefilled[1] == 4 * 6 < prefilled[0]  # no recomputed prefill


def test_queues_ahead_while_the_waiting_cannot_be_admitted():
    """Async scheduling need not wait for a step's tokens when the next step admits nothing
    (the waiting sequence's blocks are not free) and nothing running needs a block."""
    waits = []
    for blocks in (3, 5):
        s = make(num_blocks=blocks, max_num_seqs=4, max_model_len=12)
        a, b = seq(5, 4), Sequence(list(range(50, 59)), SamplingParams(0, 2, True), BS)
        s.add(a)
        s.add(b)
        s.max_num_batched_tokens = 5  # a's prefill alone
        step(s)  # a holds 2 blocks; b needs 3
        assert list(s.running) == [a] and list(s.waiting) == [b]
        waits.append(s.must_wait_for_tokens())
    assert waits == [False, True]  # 1 block free: b waits on; 3 free: b is admitted next


@pytest.mark.parametrize("lookahead", [0, 5])
def test_no_deadlock_random_workloads(lookahead):
    rng = random.Random(0)
    for trial in range(30):
        blocks = rng.randint(8, 24)
        max_len = blocks * BS
        s = make(num_blocks=blocks, max_num_seqs=rng.randint(1, 6),
                 budget=rng.randint(1, 40), max_model_len=max_len, caching=trial % 2 == 0,
                 lookahead=lookahead)
        seqs = []
        for _ in range(rng.randint(1, 10)):
            n = rng.randint(1, max_len)
            # Shared prefixes so that prefix caching is exercised too.
            toks = [rng.choice([1, 2]) for _ in range(n)]
            sq = Sequence(toks, SamplingParams(0, rng.randint(1, 3 * BS), True), BS)
            seqs.append(sq)
            s.add(sq)
        run_all(s)
        for sq in seqs:
            want = min(sq.params.max_tokens, max_len - sq.num_prompt_tokens)
            assert sq.num_completion_tokens == max(want, 1)
        assert s.bm.num_free_blocks == blocks
        assert all(b.ref_count == 0 for b in s.bm.blocks)


def test_prompt_longer_than_max_model_len_is_an_error():
    s = make(max_model_len=10)
    with pytest.raises(ValueError, match="longer than max_model_len 10"):
        s.add(seq(11))
    with pytest.raises(ValueError, match="empty"):
        s.add(seq(0))
    s.add(seq(10))


def test_stops_at_max_model_len():
    s = make(max_model_len=12)
    a = seq(10, 50)
    s.add(a)
    run_all(s)
    assert len(a) == 12


def test_prefix_cache_hit_skips_computed_blocks():
    s = make(num_blocks=32, max_num_seqs=1)
    a = seq(13, 1)
    b = seq(13, 1)
    s.add(a)
    s.add(b)
    run_all(s)
    assert s.bm.num_hit_tokens == 12
