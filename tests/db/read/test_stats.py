import math
import statistics

import pytest

from db.read.stats import (
    FASTER,
    SAME,
    SLOWER,
    Sample,
    mean_halfwidth,
    speedup,
    t_quantile,
)


def sample(values) -> Sample:
    return Sample(len(values), statistics.mean(values),
                  statistics.stdev(values) if len(values) > 1 else math.nan)


def test_t_quantiles_come_from_the_t_distribution():
    assert t_quantile(1) == pytest.approx(12.706, abs=1e-3)
    assert t_quantile(2) == pytest.approx(4.303, abs=1e-3)
    assert t_quantile(10_000) == pytest.approx(1.960, abs=1e-3)
    assert t_quantile(2.5) < t_quantile(2)  # fractional (Welch) degrees of freedom
    assert mean_halfwidth(3, 10.0) == pytest.approx(4.3027 * 10 / math.sqrt(3), rel=1e-4)
    assert math.isnan(mean_halfwidth(1, math.nan))


def test_the_phase1_claim_is_not_supported():
    """The issue's H200 repeats: nano 1.12x vLLM by the means, but not distinguishable."""
    nano, vllm = sample([25.0e3, 25.6e3, 22.4e3]), sample([24.3e3, 18.9e3, 22.2e3])
    s = speedup(nano, vllm)
    assert s.ratio == pytest.approx(1.116, abs=1e-3)
    assert s.verdict == SAME and s.low < 1 < s.high
    assert 0.8 < s.low < 0.95 and 1.3 < s.high < 1.55
    assert s.interval_text() == f"{s.low:.2f}–{s.high:.2f}×"


def test_fieller_bounds_solve_its_equation():
    """At each bound, mean_a - R mean_b is exactly t (Welch df at the estimate) standard
    errors from zero."""
    a, b = sample([200.0, 220.0, 180.0, 205.0]), sample([100.0, 110.0, 90.0])
    s = speedup(a, b)
    assert s.verdict == FASTER and 1 < s.low < s.ratio < s.high
    va, vb, r = a.var_of_mean, b.var_of_mean, s.ratio
    dof = (va + r**2 * vb) ** 2 / (va**2 / (a.n - 1) + r**4 * vb**2 / (b.n - 1))
    t = t_quantile(dof)
    for bound in (s.low, s.high):
        assert (a.mean - bound * b.mean) ** 2 == pytest.approx(t**2 * (va + bound**2 * vb))
    assert speedup(b, a).verdict == SLOWER


def test_no_spread_no_interval_and_unbounded():
    one = speedup(sample([200.0]), sample([100.0, 110.0, 90.0]))
    assert one.ratio == 2.0 and one.verdict == SAME and not one.measured
    assert one.interval_text() == "no spread"
    exact = speedup(sample([200.0, 200.0]), sample([100.0, 100.0]))
    assert (exact.low, exact.high, exact.verdict) == (2.0, 2.0, FASTER)
    # A baseline whose mean is not distinguishable from zero bounds nothing.
    wild = speedup(sample([100.0, 110.0]), sample([1.0, 200.0]))
    assert wild.verdict == SAME and math.isinf(wild.high)
    assert wild.interval_text().endswith("∞×")
