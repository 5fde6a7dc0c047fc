"""db.read.metrics: each figure defined once, its speedup pointing to "better"."""

from __future__ import annotations

import pytest

from db.read import stats
from db.read.metrics import LATENCIES, METRICS, OUTPUT_TOK_S

LOW, HIGH = stats.Sample(3, 10.0, 0.5), stats.Sample(3, 20.0, 0.5)


def test_a_speedup_above_one_is_a_gain_either_way():
    up = OUTPUT_TOK_S.speedup(HIGH, LOW)
    assert up.ratio == pytest.approx(2.0) and up.verdict == "faster"
    ttft = METRICS["ttft_p50_ms"]
    assert ttft.speedup(LOW, HIGH).ratio == pytest.approx(2.0)  # half the latency: 2x
    assert ttft.speedup(LOW, HIGH).verdict == "faster"
    assert ttft.speedup(HIGH, LOW).verdict == "slower"
    memory = METRICS["peak_memory_gib"]
    assert memory.speedup(LOW, HIGH).verdict == "smaller"
    assert memory.speedup(HIGH, LOW).verdict == "larger"
    assert memory.speedup(LOW, LOW).verdict == stats.SAME


def test_the_selector_s_metrics():
    assert [m.title for m in METRICS.values()] == [
        "output tok/s", "total tok/s", "prefill tok/s", "decode tok/s", "start time (s)",
        "peak memory (GiB)", "TTFT p50 (ms)", "TTFT p90 (ms)", "TTFT p99 (ms)",
        "TPOT p50 (ms)", "TPOT p90 (ms)", "TPOT p99 (ms)"]
    assert all(not m.higher_is_better for m in LATENCIES) and len(LATENCIES) == 6
    assert METRICS["peak_memory_gib"].scale == 2**30
