"""Profile one engine step under torch.profiler and split its time by kernel category
(engine/kernel_categories.py).

On CUDA the profiler records the device's kernels (those a CUDA graph replays included) and
a step's time is their duration. On CPU it records operators, and an operator's own time
goes to the category of the nearest of itself and its callers that has one: the copy inside
aten::addmm is GEMM time. The CPU fallbacks of norms and rotary run as elementwise
operators (aten::mul, aten::pow), which are "other" there."""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Callable

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from engine.kernel_categories import category
from engine.result import StepProfile

REPS = 3  # profiled runs of the step, averaged
TOP_KERNELS = 15


def profile_step(run: Callable[[], object], device: torch.device, *, kind: str, seqs: int,
                 tokens: int, context_tokens: int, graph: bool = False) -> StepProfile:
    """`run()` launches the step and waits for its result; it must be repeatable (the
    caller's state the same after it). It runs once to warm up, REPS times timed alone (the
    median is wall_s), REPS times under the profiler."""
    cuda = device.type == "cuda"
    run()
    walls = []
    for _ in range(REPS):
        t = time.perf_counter()
        run()
        walls.append(time.perf_counter() - t)
    with profile(activities=[ProfilerActivity.CUDA if cuda else ProfilerActivity.CPU]) as prof:
        for _ in range(REPS):
            run()
    by_category: dict[str, float] = defaultdict(float)
    by_name: dict[str, float] = defaultdict(float)
    for ev in prof.events():
        if cuda:
            if ev.device_type != DeviceType.CUDA:
                continue
            seconds, cat = ev.time_range.elapsed_us() / 1e6, category(ev.name)
        else:
            seconds, cat = ev.self_cpu_time_total / 1e6, _cpu_category(ev)
        by_category[cat] += seconds / REPS
        by_name[ev.name] += seconds / REPS
    top = dict(sorted(by_name.items(), key=lambda kv: -kv[1])[:TOP_KERNELS])
    return StepProfile(
        kind=kind, seqs=seqs, tokens=tokens, context_tokens=context_tokens,
        activity="cuda" if cuda else "cpu", busy_s=sum(by_category.values()),
        wall_s=statistics.median(walls), categories_s=dict(by_category), top_kernels_s=top,
        graph=graph,
    )


def _cpu_category(ev) -> str:
    while ev is not None:
        cat = category(ev.name)
        if cat != "other":
            return cat
        ev = ev.cpu_parent
    return "other"
