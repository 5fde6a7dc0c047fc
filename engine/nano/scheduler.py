"""Scheduler: waiting and running queues, a prefill token budget, chunked prefill and
preemption by recompute.

A step is either a prefill step or a decode step. Prefill steps come first: they continue
chunked prefills of running sequences, then admit waiting ones while the token budget,
max_num_seqs and free blocks allow; the sequence that does not fit in the budget is cut to
a chunk. A decode step gives every running sequence one token; when a sequence needs a new
block and none is free, the newest running sequence is preempted: its blocks are freed and
it goes back to the front of the waiting queue, to be recomputed later (its computed full
blocks may still be found in the prefix cache).

No deadlock: the KV cache holds at least one max_model_len sequence (LLM checks it), no
sequence grows beyond max_model_len, and a sequence alone in the engine can always get its
blocks back, because preemption frees everything the others hold.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from engine.nano.block_manager import BlockManager
from engine.nano.sequence import Sequence, Status


@dataclass
class Batch:
    seqs: list[Sequence]
    num_new_tokens: list[int]  # tokens computed for each sequence in this step
    is_prefill: bool
    # Whether each sequence reaches its end in this step, and so gets a next token; fixed
    # when the batch is made.
    sample_flags: list[bool] = field(init=False)

    def __post_init__(self) -> None:
        self.sample_flags = [
            s.num_computed_tokens + n == len(s)
            for s, n in zip(self.seqs, self.num_new_tokens, strict=True)
        ]

    @property
    def num_tokens(self) -> int:
        return sum(self.num_new_tokens)

    def samples(self, i: int) -> bool:
        return self.sample_flags[i]


class Scheduler:
    def __init__(
        self,
        block_manager: BlockManager,
        max_num_seqs: int,
        max_num_batched_tokens: int,
        max_model_len: int,
        eos_token_ids: tuple[int, ...] = (),
    ):
        self.bm = block_manager
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.max_model_len = max_model_len
        self.eos_token_ids = set(eos_token_ids)
        self.waiting: deque[Sequence] = deque()
        self.running: deque[Sequence] = deque()
        self.num_preemptions = 0

    def check(self, seq: Sequence) -> None:
        """Raise ValueError if seq can never run."""
        if len(seq) == 0:
            raise ValueError("empty prompt")
        if len(seq) > self.max_model_len:
            raise ValueError(
                f"prompt of {len(seq)} tokens is longer than max_model_len {self.max_model_len}"
            )

    def add(self, seq: Sequence) -> None:
        self.check(seq)
        seq.status = Status.WAITING
        self.waiting.append(seq)

    def is_finished(self) -> bool:
        return not self.waiting and not self.running

    def schedule(self) -> Batch:
        batch = self._schedule_prefill() or self._schedule_decode()
        if batch is None:
            raise RuntimeError(
                f"scheduler stalled: {len(self.waiting)} waiting, {len(self.running)} running, "
                f"{self.bm.num_free_blocks}/{self.bm.num_blocks} blocks free"
            )
        return batch

    def _schedule_prefill(self) -> Batch | None:
        budget = self.max_num_batched_tokens
        seqs: list[Sequence] = []
        counts: list[int] = []
        for seq in self.running:  # chunked prefills in progress
            if budget == 0:
                break
            if seq.in_prefill:
                n = min(seq.num_uncomputed_tokens, budget)
                seqs.append(seq)
                counts.append(n)
                budget -= n
        while self.waiting and budget > 0 and len(self.running) < self.max_num_seqs:
            seq = self.waiting[0]
            if not self.bm.can_allocate(seq):
                break
            self.bm.allocate(seq)
            self.waiting.popleft()
            seq.status = Status.RUNNING
            self.running.append(seq)
            n = min(seq.num_uncomputed_tokens, budget)
            seqs.append(seq)
            counts.append(n)
            budget -= n
        return Batch(seqs, counts, True) if seqs else None

    def _schedule_decode(self) -> Batch | None:
        seqs: list[Sequence] = []
        bs = self.bm.block_size
        while self.running:
            seq = self.running.popleft()
            if len(seq.block_table) * bs >= len(seq.token_ids):  # its slot is there already
                seqs.append(seq)
                continue
            while not self.bm.can_append(seq):
                if self.running:
                    self._preempt(self.running.pop())
                else:
                    self._preempt(seq)
                    break
            else:
                self.bm.append_slot(seq)
                seqs.append(seq)
        self.running.extend(seqs)
        return Batch(seqs, [1] * len(seqs), False) if seqs else None

    def _preempt(self, seq: Sequence) -> None:
        self.bm.deallocate(seq)
        seq.status = Status.WAITING
        seq.num_preemptions += 1
        self.num_preemptions += 1
        self.waiting.appendleft(seq)

    def postprocess(self, batch: Batch, token_ids: list[int]) -> list[Sequence]:
        """Record the step: computed tokens, sampled tokens (one per sampling sequence, in
        order), prefix-cache registration, and finishing. Return the finished sequences.
        Runs on the host every step, so the common case stays a few attribute updates."""
        if len(token_ids) != sum(batch.sample_flags):
            raise AssertionError(
                f"{len(token_ids)} sampled tokens for {sum(batch.sample_flags)} sampling sequences"
            )
        sampled = iter(token_ids)
        finished = []
        bs = self.bm.block_size
        for seq, n, samples in zip(batch.seqs, batch.num_new_tokens, batch.sample_flags,
                                   strict=True):
            seq.num_computed_tokens += n
            if seq.num_computed_tokens // bs > seq.num_hashed_blocks:
                self.bm.register(seq)
            if not samples:
                continue
            tok = next(sampled)
            seq.token_ids.append(tok)
            p = seq.params
            if (
                (not p.ignore_eos and tok in self.eos_token_ids)
                or len(seq.token_ids) - seq.num_prompt_tokens >= p.max_tokens
                or len(seq.token_ids) >= self.max_model_len
            ):
                seq.status = Status.FINISHED
                self.bm.deallocate(seq)
                self.running.remove(seq)
                finished.append(seq)
        return finished
