"""Named, seeded, fingerprinted workloads.

A workload is data: a recipe name, a seed and its sizes. Building it draws every prompt's
token ids and every request's max_tokens with Python's `random`, in the recipe's order, so
two machines that build the same spec get the same token ids. The fingerprint (a hash of
all token ids and max_tokens, or of the recipe for a workload too large to draw cheaply)
travels with every result.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, field

# Prompt token ids are drawn from [0, MAX_TOKEN_ID], as nano-vLLM's bench.py does.
MAX_TOKEN_ID = 10000
# The largest workload a sweep may ask for: far beyond any benchmark, and small enough that
# a worker can hold it.
MAX_NUM_SEQS = 100_000
MAX_INPUT_LEN = MAX_OUTPUT_LEN = 1 << 20
# Up to this many prompt tokens (at the spec's longest prompt) the fingerprint hashes the
# token ids themselves, about a second's drawing in the coordinator; a larger workload is
# fingerprinted by its recipe, name and seed (the draw is deterministic, so it names the
# same tokens).
TOKEN_FINGERPRINT_MAX = 1_000_000


@dataclass(frozen=True)
class WorkloadSpec:
    """What a sweep file says about its workload; `name` picks the draw order."""

    name: str = "standard"
    num_seqs: int = 256
    input_len: tuple[int, int] = (100, 1024)
    output_len: tuple[int, int] = (100, 1024)
    temperature: float = 0.6
    ignore_eos: bool = True
    seed: int = 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_len"] = list(self.input_len)
        d["output_len"] = list(self.output_len)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> WorkloadSpec:
        d = dict(d)
        for k in ("input_len", "output_len"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


@dataclass(frozen=True)
class Workload:
    spec: WorkloadSpec
    prompts: list[list[int]] = field(repr=False)
    max_tokens: list[int] = field(repr=False)

    @property
    def prompt_tokens(self) -> int:
        return sum(len(p) for p in self.prompts)

    @property
    def requested_output_tokens(self) -> int:
        return sum(self.max_tokens)

    @property
    def fingerprint(self) -> str:
        if _fingerprint_by_recipe(self.spec):
            return recipe_fingerprint(self.spec)
        h = hashlib.sha256()
        for prompt, n in zip(self.prompts, self.max_tokens, strict=True):
            h.update(b"%d:" % n)
            h.update(",".join(map(str, prompt)).encode())
            h.update(b";")
        h.update(b"T%r:E%d" % (self.spec.temperature, self.spec.ignore_eos))
        return h.hexdigest()[:16]


def _prompts(rng: random.Random, s: WorkloadSpec) -> list[list[int]]:
    return [
        [rng.randint(0, MAX_TOKEN_ID) for _ in range(rng.randint(*s.input_len))]
        for _ in range(s.num_seqs)
    ]


def _outputs(rng: random.Random, s: WorkloadSpec) -> list[int]:
    return [rng.randint(*s.output_len) for _ in range(s.num_seqs)]


def _prompts_first(rng: random.Random, s: WorkloadSpec) -> tuple[list[list[int]], list[int]]:
    # nano-vLLM bench.py: all prompts, then all max_tokens.
    prompts = _prompts(rng, s)
    return prompts, _outputs(rng, s)


def _outputs_first(rng: random.Random, s: WorkloadSpec) -> tuple[list[list[int]], list[int]]:
    # The Phase 1 baseline's order: max_tokens first (144,831 output tokens at the defaults).
    outputs = _outputs(rng, s)
    return _prompts(rng, s), outputs


RECIPES = {"standard": _prompts_first, "phase1": _outputs_first}


def _fingerprint_by_recipe(spec: WorkloadSpec) -> bool:
    return spec.num_seqs * spec.input_len[1] > TOKEN_FINGERPRINT_MAX


def recipe_fingerprint(spec: WorkloadSpec) -> str:
    text = json.dumps(spec.to_dict(), sort_keys=True)
    return "r" + hashlib.sha256(text.encode()).hexdigest()[:15]


def fingerprint(spec: WorkloadSpec) -> str:
    """The fingerprint a worker's build of this spec will carry, built only where the
    token ids are hashed (a bounded draw)."""
    return recipe_fingerprint(spec) if _fingerprint_by_recipe(spec) else build(spec).fingerprint


def build(spec: WorkloadSpec) -> Workload:
    if spec.name not in RECIPES:
        raise ValueError(f"unknown workload {spec.name!r}; known: {', '.join(sorted(RECIPES))}")
    prompts, max_tokens = RECIPES[spec.name](random.Random(spec.seed), spec)
    return Workload(spec, prompts, max_tokens)
