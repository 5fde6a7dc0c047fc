"""Per-request latency: time to first token (TTFT) and time per output token (TPOT), and
their p50/p90/p99 over a generate's requests. Plain data, no torch.

The benchmark is offline: every request arrives when the timed generate starts, so a
request's times are measured from that start. TTFT is its first token's time; TPOT is the
mean gap between its later tokens, (last - first) / (n - 1), defined for n >= 2 tokens.
Each engine reports the times at which its tokens became known on the host (engine
adapters' stats(), "request_timings"); `summarize` is the one computation of the figures."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class RequestTiming:
    first_token_s: float  # seconds from the start of the timed generate
    last_token_s: float
    output_tokens: int


@dataclass(frozen=True)
class Latency:
    """The figures BenchResult carries under the same names, in seconds."""

    ttft_p50_s: float
    ttft_p90_s: float
    ttft_p99_s: float
    # None where no request had two tokens or more.
    tpot_p50_s: float | None
    tpot_p90_s: float | None
    tpot_p99_s: float | None


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between the closest ranks
    (numpy's default): the median of [1, 2, 3, 4] is 2.5."""
    if not values:
        raise ValueError("percentile of no values")
    v = sorted(values)
    pos = (len(v) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def summarize(timings: Sequence[RequestTiming]) -> Latency | None:
    """TTFT and TPOT at p50/p90/p99 over the requests; None for no requests."""
    if not timings:
        return None
    ttft = [t.first_token_s for t in timings]
    tpot = [(t.last_token_s - t.first_token_s) / (t.output_tokens - 1)
            for t in timings if t.output_tokens >= 2]
    return Latency(
        ttft_p50_s=percentile(ttft, 50), ttft_p90_s=percentile(ttft, 90),
        ttft_p99_s=percentile(ttft, 99),
        tpot_p50_s=percentile(tpot, 50) if tpot else None,
        tpot_p90_s=percentile(tpot, 90) if tpot else None,
        tpot_p99_s=percentile(tpot, 99) if tpot else None,
    )
