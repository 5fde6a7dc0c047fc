"""The figures a sweep's results are summarized, charted and compared by, each defined once:
its name in URLs, its label, the results_frame column it comes from, its unit and which way
is better. The summary (db/read/results.summarize), its speedups and the dashboard's pages
read them from here.

A speedup is always "how many times better": a / b for a figure where higher is better,
b / a where lower is (a latency, a start time, memory), so a speedup above 1 is a gain
either way. A result without a figure (vLLM without its latency_metrics option, an engine
that reports no prefill time) has NaN there: missing, never 0."""

from __future__ import annotations

from dataclasses import dataclass

from db.read import stats
from engine.memory_budget import GIB  # bytes are shown in GiB


@dataclass(frozen=True)
class Metric:
    key: str  # in URLs and in summary columns (`{key}_mean`)
    label: str
    column: str  # the results_frame column it is read from
    unit: str
    higher_is_better: bool
    scale: float = 1.0  # column / scale is the figure in `unit`
    fmt: str = ",.2f"  # a figure's format (Python's, which d3 in the charts reads alike)
    better: str = stats.FASTER  # the verdicts of a ratio whose interval is above 1, below 1
    worse: str = stats.SLOWER

    @property
    def title(self) -> str:
        """The label with its unit, where the label does not already say it."""
        return self.label if self.label.endswith(self.unit) else f"{self.label} ({self.unit})"

    def speedup(self, a: stats.Sample, b: stats.Sample) -> stats.Speedup:
        """How many times better a is than b, with its interval; the verdict in this
        metric's words."""
        s = stats.speedup(a, b) if self.higher_is_better else stats.speedup(b, a)
        words = {stats.FASTER: self.better, stats.SLOWER: self.worse}
        return stats.Speedup(s.ratio, s.low, s.high, words.get(s.verdict, s.verdict))


def _latency(kind: str, q: int) -> Metric:
    return Metric(f"{kind}_p{q}_ms", f"{kind.upper()} p{q}", f"{kind}_p{q}_ms", "ms", False)


def _throughput(key: str, label: str) -> Metric:
    return Metric(key, label, key, "tok/s", True, fmt=",.1f")


METRICS: dict[str, Metric] = {m.key: m for m in (
    _throughput("output_tok_s", "output tok/s"),
    _throughput("total_tok_s", "total tok/s"),
    _throughput("prefill_tok_s", "prefill tok/s"),
    _throughput("decode_tok_s", "decode tok/s"),
    Metric("start_s", "start time", "start_s", "s", False),
    Metric("peak_memory_gib", "peak memory", "peak_memory_bytes", "GiB", False, scale=GIB,
           better="smaller", worse="larger"),
    *(_latency(kind, q) for kind in ("ttft", "tpot") for q in (50, 90, 99)),
)}
OUTPUT_TOK_S = METRICS["output_tok_s"]
LATENCIES = [m for m in METRICS.values() if m.unit == "ms"]
