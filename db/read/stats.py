"""The uncertainty of every figure a reader shows: the 95% interval of a mean throughput
(Student t) and of a speedup, with the verdict the speedup's interval supports.

A speedup is the ratio of two independent means (a configuration's output tok/s over the
baseline's). Its interval is Fieller's: the set of ratios R for which mean_a - R * mean_b is
not significantly different from zero, with Welch-Satterthwaite degrees of freedom for
that difference (the two configurations need not share a variance or a repeat count).
Where the baseline's own mean is not significantly above zero, the interval has no upper
bound. Quantiles come from scipy.special (stdtrit: scipy.stats would add a second to the
start of every command and page that reads results)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.special import stdtrit

LEVEL = 0.95
FASTER, SLOWER, SAME = "faster", "slower", "not distinguishable"
NO_SPREAD = "no spread"  # n = 1: one measurement has no variance, so no interval


def t_quantile(df: float) -> float:
    """The two-sided LEVEL quantile of Student's t with `df` degrees of freedom."""
    return float(stdtrit(df, 0.5 + LEVEL / 2))


def mean_halfwidth(n: int, std: float) -> float:
    """Half-width of the LEVEL interval of a mean of n measurements; NaN below n = 2."""
    if n < 2 or std is None or math.isnan(std):
        return math.nan
    return t_quantile(n - 1) * std / math.sqrt(n)


@dataclass(frozen=True)
class Sample:
    """A configuration's throughput: its repeat count, mean and standard deviation."""

    n: int
    mean: float
    std: float  # NaN for n = 1

    @property
    def var_of_mean(self) -> float:
        return self.std**2 / self.n


@dataclass(frozen=True)
class Speedup:
    ratio: float
    low: float  # NaN where there is no spread to estimate it from; inf where unbounded
    high: float
    verdict: str  # FASTER | SLOWER | SAME

    @property
    def measured(self) -> bool:
        """Whether an interval could be estimated (both sides have n >= 2)."""
        return not math.isnan(self.low)

    def interval_text(self) -> str:
        if not self.measured:
            return NO_SPREAD
        high = "∞" if math.isinf(self.high) else f"{self.high:.2f}"
        return f"{max(self.low, 0.0):.2f}–{high}×"


def speedup(a: Sample, b: Sample) -> Speedup:
    """a's mean over b's with Fieller's LEVEL interval and its verdict: FASTER when the whole
    interval is above 1, SLOWER when below, else SAME ("not distinguishable at this n")."""
    ratio = a.mean / b.mean
    if a.n < 2 or b.n < 2:
        return Speedup(ratio, math.nan, math.nan, SAME)
    va, vb = a.var_of_mean, b.var_of_mean
    if va + vb == 0:  # every repeat identical on both sides: the ratio is exact
        return Speedup(ratio, ratio, ratio, _verdict(ratio, ratio))
    dof = (va + ratio**2 * vb) ** 2 / (va**2 / (a.n - 1) + ratio**4 * vb**2 / (b.n - 1))
    t2 = t_quantile(dof) ** 2
    denom = b.mean**2 - t2 * vb
    if denom <= 0:  # the baseline's mean is not distinguishable from 0: no upper bound
        return Speedup(ratio, -math.inf, math.inf, SAME)
    root = math.sqrt(t2 * (va * b.mean**2 + vb * a.mean**2 - t2 * va * vb))
    low, high = (a.mean * b.mean - root) / denom, (a.mean * b.mean + root) / denom
    return Speedup(ratio, low, high, _verdict(low, high))


def _verdict(low: float, high: float) -> str:
    return FASTER if low > 1 else SLOWER if high < 1 else SAME
