"""Scheduler: waiting and running queues, a prefill token budget, chunked prefill and
preemption by recompute.

A step is either a prefill step or a decode step. Prefill steps come first: they continue
chunked prefills of running sequences, then admit waiting ones while the token budget,
max_num_seqs and free blocks allow; the sequence that does not fit in the budget is cut to
a chunk. A decode step gives every running sequence one token; when a sequence needs a new
block and none is free, the newest running sequence is preempted: its blocks are freed and
it goes back to the front of the waiting queue, to be recomputed later (its computed full
blocks may still be found in the prefix cache).

Admission looks ahead (admission_lookahead tokens): a waiting sequence is admitted only if,
after its prompt's blocks, enough stay free for every running sequence, and itself, to grow
that many tokens. Without it, a tight cache admits a sequence into the last free blocks
and preempts it, its prefill wasted, at the next block another sequence needs.

No deadlock: the KV cache holds at least one max_model_len sequence (LLM checks it), no
sequence grows beyond max_model_len, and a sequence alone in the engine can always get its
blocks back, because preemption frees everything the others hold.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from engine.nano.block_manager import BlockManager
from engine.nano.sequence import PLACEHOLDER, Sequence, Status


@dataclass
class Batch:
    seqs: list[Sequence]
    num_new_tokens: list[int]  # tokens computed for each sequence in this step
    is_prefill: bool
    # Whether each sequence reaches its end in this step, and so gets a next token; fixed
    # when the batch is made.
    sample_flags: list[bool] = field(init=False)
    # Where each sampling sequence's new token goes in its token_ids (set by advance()).
    token_positions: list[int] = field(init=False, default_factory=list)

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
        admission_lookahead: int = 0,
    ):
        self.bm = block_manager
        self.admission_lookahead = admission_lookahead
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.max_model_len = max_model_len
        self.eos_token_ids = set(eos_token_ids)
        self.waiting: deque[Sequence] = deque()
        self.running: deque[Sequence] = deque()
        self.num_preemptions = 0

    def validate(self, seq: Sequence) -> None:
        """Raise ValueError if seq can never run."""
        if len(seq) == 0:
            raise ValueError("empty prompt")
        if len(seq) > self.max_model_len:
            raise ValueError(
                f"prompt of {len(seq)} tokens is longer than max_model_len {self.max_model_len}"
            )

    def add(self, seq: Sequence) -> None:
        self.validate(seq)
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
        spare = self._growth(self.running) if self.waiting else 0
        while self.waiting and budget > 0 and len(self.running) < self.max_num_seqs:
            seq = self.waiting[0]
            grows = self._growth([seq])
            # Alone in the engine a sequence is always admitted: it can preempt no other.
            if not self.bm.can_allocate(seq, spare + grows if self.running else 0):
                break
            spare += grows
            self.bm.allocate(seq)
            self.waiting.popleft()
            seq.status = Status.RUNNING
            self.running.append(seq)
            n = min(seq.num_uncomputed_tokens, budget)
            seqs.append(seq)
            counts.append(n)
            budget -= n
        return Batch(seqs, counts, True) if seqs else None

    def _growth(self, seqs) -> int:
        """Blocks the sequences would need beyond those they hold (a waiting one: beyond its
        own tokens') to grow admission_lookahead tokens each."""
        ahead = self.admission_lookahead
        if not ahead:
            return 0
        bs, most = self.bm.block_size, self.max_model_len
        return sum(max(0, -(-min(len(s) + ahead, s.num_prompt_tokens + s.params.max_tokens, most)
                            // bs) - (len(s.block_table) or s.num_blocks))
                   for s in seqs)

    def _schedule_decode(self) -> Batch | None:
        seqs: list[Sequence] = []
        while self.running:
            seq = self.running.popleft()
            if not self.bm.needs_block(seq):  # its slot is there already
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

    def advance(self, batch: Batch) -> None:
        """Record a step as soon as it is queued, before its tokens are known: computed
        tokens, a PLACEHOLDER for each sampled token, and the end of every sequence that
        reaches max_tokens or max_model_len: out of the running queue at once, so that the
        next step can be scheduled; its blocks stay until complete() has its last token
        (and registers its blocks). Runs on the host every step: a few attribute updates."""
        positions = batch.token_positions
        for seq, n, samples in zip(batch.seqs, batch.num_new_tokens, batch.sample_flags,
                                   strict=True):
            seq.num_computed_tokens += n
            if not samples:
                continue
            seq.token_ids.append(PLACEHOLDER)
            positions.append(len(seq.token_ids) - 1)
            if (len(seq.token_ids) - seq.num_prompt_tokens >= seq.params.max_tokens
                    or len(seq.token_ids) >= self.max_model_len):
                seq.status = Status.FINISHED
                self.running.remove(seq)

    def complete(self, batch: Batch, token_ids: list[int], now: float) -> list[Sequence]:
        """Record an advanced step's sampled tokens (one per sampling sequence, in order),
        read back by the host at time `now`: fill the placeholders, note a sequence's first
        token time, register newly computed blocks in the prefix cache, end the sequences
        that sampled an end token (dropping a token a later step may already have queued for
        them), and free the blocks of every sequence that ended, noting its last token
        time. Return those."""
        if len(token_ids) != len(batch.token_positions):
            raise AssertionError(f"{len(token_ids)} sampled tokens for "
                                 f"{len(batch.token_positions)} sampling sequences")
        bs = self.bm.block_size
        finished = []
        k = 0
        for seq, samples in zip(batch.seqs, batch.sample_flags, strict=True):
            if samples:
                pos, tok = batch.token_positions[k], token_ids[k]
                k += 1
                if pos >= len(seq.token_ids):  # it has ended at an end token since
                    continue
                seq.token_ids[pos] = tok
                if seq.first_token_at is None:
                    seq.first_token_at = now
            if seq.block_table and seq.num_computed_tokens // bs > seq.num_hashed_blocks:
                self.bm.register(seq)
            if not samples:
                continue
            if not seq.params.ignore_eos and tok in self.eos_token_ids:
                del seq.token_ids[pos + 1:]
                if seq.status is Status.RUNNING:
                    self.running.remove(seq)
                elif seq.status is Status.WAITING:  # preempted since
                    self.waiting.remove(seq)
                # else: at its length limit, by a step queued since
            elif seq.status is not Status.FINISHED or pos != len(seq.token_ids) - 1:
                continue  # not its last token
            seq.status = Status.FINISHED
            seq.last_token_at = now
            self.bm.deallocate(seq)
            finished.append(seq)
        return finished

    def abort(self) -> None:
        """Drop every sequence in the engine, freeing its blocks (none may be in flight)."""
        for seq in self.running:
            self.bm.deallocate(seq)
            seq.status = Status.FINISHED
        for seq in self.waiting:
            seq.status = Status.FINISHED
        self.running.clear()
        self.waiting.clear()

    def must_wait_for_tokens(self) -> bool:
        """Whether the next step needs the tokens of the step queued last: when it may
        admit or recompute a sequence (a prefill reads its tokens), when nothing is left to
        decode, and when it may have to preempt: the running sequences may need more new
        blocks than are free, and which of them have ended (their blocks freed by
        complete()) is not known yet."""
        if not self.running:
            return True
        # Admitting reads a sequence's tokens; a waiting one that cannot get its blocks now
        # is not admitted next step either (what the queued step frees comes a step later).
        if (self.waiting and len(self.running) < self.max_num_seqs
                and self.bm.can_allocate(self.waiting[0], self._growth(self.running))):
            return True
        free = self.bm.num_free_blocks
        if free >= len(self.running):
            return False
        return sum(1 for s in self.running if self.bm.needs_block(s)) > free
