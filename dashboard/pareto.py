"""The Pareto front of points that cost something and gain something (a latency and a
throughput): the points no other point beats on both."""

from __future__ import annotations

import math
from collections.abc import Sequence


def pareto_front(cost: Sequence[float], gain: Sequence[float]) -> list[bool]:
    """Whether each point is Pareto-optimal, lower `cost` and higher `gain` being better: no
    other point has a cost as low and a gain as high, and one of them strictly. Points equal
    on both are on the front together; a point missing either figure (NaN) never is."""
    if len(cost) != len(gain):
        raise ValueError(f"{len(cost)} costs and {len(gain)} gains")
    on = [False] * len(cost)
    known = [i for i in range(len(cost)) if not (math.isnan(cost[i]) or math.isnan(gain[i]))]
    best, last = -math.inf, None
    # Cheapest first, and among equal costs the best gain first: a point is on the front
    # when it gains more than every cheaper one (or equals the one just put there).
    for i in sorted(known, key=lambda i: (cost[i], -gain[i])):
        if gain[i] > best:
            on[i], best, last = True, gain[i], (cost[i], gain[i])
        elif (cost[i], gain[i]) == last:
            on[i] = True
    return on
