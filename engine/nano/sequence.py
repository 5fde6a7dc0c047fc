"""Sequence: one request's tokens, its place in the KV cache and its progress."""

from __future__ import annotations

import enum
import itertools

from engine.nano.sampling import SamplingParams

# The token of a sequence whose step is queued on the device and not read back yet.
PLACEHOLDER = -1


class Status(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


class Sequence:
    _ids = itertools.count()

    def __init__(self, token_ids: list[int], params: SamplingParams, block_size: int):
        self.seq_id = next(Sequence._ids)
        self.token_ids = list(token_ids)
        self.num_prompt_tokens = len(token_ids)
        self.params = params
        self.block_size = block_size
        self.status = Status.WAITING
        self.block_table: list[int] = []
        # Tokens whose K/V are in the cache (prefix-cache hits included). A running sequence
        # decodes when exactly its last token is missing from the cache.
        self.num_computed_tokens = 0
        self.num_cached_tokens = 0  # of those, found in the prefix cache at admission
        self.num_hashed_blocks = 0  # leading full blocks registered in the prefix cache
        self.num_preemptions = 0
        # When the host learnt its first and its last token (time.perf_counter(), set by
        # Scheduler.complete): its latency, without a list of every token's time.
        self.first_token_at: float | None = None
        self.last_token_at: float | None = None

    def __len__(self) -> int:
        return len(self.token_ids)

    @property
    def num_completion_tokens(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def completion_token_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens :]

    @property
    def num_uncomputed_tokens(self) -> int:
        return len(self.token_ids) - self.num_computed_tokens

    @property
    def in_prefill(self) -> bool:
        """A running sequence whose prompt is only partly computed (chunked prefill)."""
        return self.num_uncomputed_tokens > 1

    @property
    def num_blocks(self) -> int:
        return (len(self.token_ids) + self.block_size - 1) // self.block_size

    def block_tokens(self, i: int) -> list[int]:
        return self.token_ids[i * self.block_size : (i + 1) * self.block_size]
