"""dashboard.pareto: the front of latency against throughput."""

from __future__ import annotations

import math
import random

import pytest

from dashboard.pareto import pareto_front


def dominated(i: int, cost, gain) -> bool:
    return any(cost[j] <= cost[i] and gain[j] >= gain[i]
               and (cost[j] < cost[i] or gain[j] > gain[i]) for j in range(len(cost)))


def test_a_sweep_across_max_num_seqs():
    # More sequences: more throughput at more latency, until the last gains nothing.
    cost = [10.0, 12.0, 15.0, 22.0, 30.0]
    gain = [100.0, 180.0, 260.0, 300.0, 290.0]
    assert pareto_front(cost, gain) == [True, True, True, True, False]


def test_dominated_points_ties_and_missing_figures():
    cost = [5.0, 5.0, 6.0, 4.0, 4.0, math.nan, 3.0]
    gain = [10.0, 9.0, 10.0, 8.0, 8.0, 99.0, math.nan]
    # 5/9 loses to 5/10 at the same cost; 6/10 costs more for the same gain; the two 4/8
    # are equal and both on the front; NaN never is.
    assert pareto_front(cost, gain) == [True, False, False, True, True, False, False]


def test_nothing_and_a_mismatch():
    assert pareto_front([], []) == []
    with pytest.raises(ValueError):
        pareto_front([1.0], [])


def test_agrees_with_the_definition():
    rnd = random.Random(7)
    for _ in range(200):
        n = rnd.randint(1, 12)
        cost = [float(rnd.randint(0, 5)) for _ in range(n)]
        gain = [float(rnd.randint(0, 5)) for _ in range(n)]
        assert pareto_front(cost, gain) == [not dominated(i, cost, gain) for i in range(n)]
