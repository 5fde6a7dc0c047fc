import subprocess
import sys
from pathlib import Path

import pytest

from engine.latency import Latency, RequestTiming, percentile, summarize


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 0) == 1.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 100) == 4.0
    assert percentile(list(range(101)), 90) == 90
    assert percentile([0.0, 10.0], 99) == pytest.approx(9.9)
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_ttft_and_tpot_of_known_requests() -> None:
    timings = [
        RequestTiming(first_token_s=0.1, last_token_s=1.1, output_tokens=11),  # tpot 0.1
        RequestTiming(first_token_s=0.2, last_token_s=0.6, output_tokens=3),  # tpot 0.2
        RequestTiming(first_token_s=0.5, last_token_s=0.5, output_tokens=1),  # no tpot
        RequestTiming(first_token_s=0.3, last_token_s=2.7, output_tokens=7),  # tpot 0.4
    ]
    got = summarize(timings)
    want = Latency(ttft_p50_s=0.25, ttft_p90_s=0.44, ttft_p99_s=0.494,
                   tpot_p50_s=0.2, tpot_p90_s=0.36, tpot_p99_s=0.396)
    for name in Latency.__dataclass_fields__:
        assert getattr(got, name) == pytest.approx(getattr(want, name)), name


def test_one_token_requests_give_no_tpot() -> None:
    got = summarize([RequestTiming(0.3, 0.3, 1), RequestTiming(0.1, 0.1, 1)])
    assert got.ttft_p50_s == pytest.approx(0.2)
    assert got.tpot_p50_s is got.tpot_p90_s is got.tpot_p99_s is None
    assert summarize([]) is None


def test_imports_without_torch() -> None:
    code = "import sys, engine.latency; assert 'torch' not in sys.modules"
    root = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
