"""GPU telemetry: an attempt's samples (AttemptTelemetry, engine.gpu_telemetry.Telemetry)
with the phases of its result placed in their time, the summary of its timed generate, and
the one marker of a result whose GPU was not the engine's alone (`gpu_mark`), which the Job
page, the Sweep page's results and `orchestrate results` show alike.

The phases come from the result's figures: the timed generate ends where the job's result
line came (Telemetry.done_s, the runner's clock) and lasts elapsed_s; the engine start
(start_s: load, profile, compile, capture, warm-up) lies just before it. The first job of a
process that ran several (`reuse: repeats`) has the engine's start in its share; the others
start where the previous job's line came, so their start phase is their warm-up alone."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from db.models import Attempt, AttemptTelemetry, Result
from db.read.timeline import ENGINE_START, GENERATE
from db.store import Store
from engine.gpu_telemetry import Summary, Telemetry, generate_window, summarize
from engine.result import BenchResult

MARK_COLUMN = "gpu_mark"  # a results frame's column of gpu_mark
MARK_TITLE = "GPU mark"  # its heading where it is shown
MARK_HELP = ("throttled: the GPU's clocks were held down (heat, a hardware slowdown, a "
             "power brake; not the power cap a loaded card runs at) during the timed "
             "generate; shared GPU: a compute process not the job's was on it before, "
             "during or after the job")


def gpu_mark(result: BenchResult, tel: Telemetry | None) -> str:
    """Why a result's figure was not taken on a GPU that was the engine's alone, in a few
    words: `throttled (sw_thermal)`, `shared GPU`, both; empty: nothing seen."""
    parts = []
    summary = summarize(tel, result.elapsed_s) if tel is not None else None
    if summary is not None and summary.slowed:
        parts.append(f"throttled ({', '.join(summary.slowed)})")
    cond = result.conditions
    sampled_others = tel is not None and any(o for o in tel.others if o)
    if cond.gpu_processes_before or cond.gpu_processes_after or sampled_others:
        parts.append("shared GPU")
    return "; ".join(parts)


def phases(tel: Telemetry, result: BenchResult) -> list[tuple[str, float, float]]:
    """(ENGINE_START | GENERATE, from s, to s) in the telemetry's time; none without
    done_s (module docstring)."""
    w = generate_window(tel, result.elapsed_s)
    if w is None:
        return []
    return [(ENGINE_START, max(0.0, w[0] - result.start_s), w[0]), (GENERATE, *w)]


@dataclass(frozen=True)
class AttemptGpu:
    """An attempt's telemetry; with its result's phases, summary and mark where the
    attempt produced the job's result."""

    attempt_id: int
    number: int
    telemetry: Telemetry
    result: BenchResult | None
    phases: list[tuple[str, float, float]]
    summary: Summary | None
    mark: str


def _telemetry(row: AttemptTelemetry) -> Telemetry:
    return Telemetry.from_dict({**row.series, "period_s": row.period_s, "done_s": row.done_s})


def telemetry_of(store: Store, attempt_ids: list[int]) -> dict[int, Telemetry]:
    """The telemetry of each of these attempts that has any."""
    if not attempt_ids:
        return {}
    out: dict[int, Telemetry] = {}
    with store.session() as s:
        for i in range(0, len(attempt_ids), 500):
            for row in s.scalars(select(AttemptTelemetry).where(
                    AttemptTelemetry.attempt_id.in_(attempt_ids[i:i + 500]))):
                out[row.attempt_id] = _telemetry(row)
    return out


def attempt_gpu(store: Store, job_id: int, number: int) -> AttemptGpu | None:
    """The job's attempt `number`'s telemetry; None when it has none."""
    with store.session() as s:
        row = s.execute(select(Attempt.id, AttemptTelemetry)
                        .join(AttemptTelemetry, AttemptTelemetry.attempt_id == Attempt.id)
                        .where(Attempt.job_id == job_id, Attempt.number == number)).first()
        if row is None:
            return None
        attempt_id, trow = row
        record = s.scalar(select(Result.record).where(Result.attempt_id == attempt_id))
    tel = _telemetry(trow)
    if record is None:
        return AttemptGpu(attempt_id, number, tel, None, [], None, "")
    result = BenchResult.from_dict(record)
    return AttemptGpu(attempt_id, number, tel, result, phases(tel, result),
                      summarize(tel, result.elapsed_s), gpu_mark(result, tel))


def summary_text(summary: Summary | None) -> str:
    """A result's timed generate as the GPU saw it, in one line."""
    if summary is None:
        return "no sample fell inside the timed generate"

    def fig(v, fmt: str) -> str:
        return "—" if v is None else format(v, fmt)

    return (f"timed generate: {summary.samples} sample(s), GPU {fig(summary.gpu_pct_mean, '.0f')}%"
            f" busy, {fig(summary.power_w_mean, '.0f')} W on average, peak "
            f"{fig(summary.temp_c_peak, 'd')} °C, "
            + (f"clock reasons: {', '.join(summary.throttle)}" if summary.throttle
               else "no clock reason"))
