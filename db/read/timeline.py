"""The timeline of a sweep: every attempt as a bar on its host and GPU slot, with the engine
start and the timed generate inside it, and the sweep's efficiency: time inside timed
generates ÷ GPU time held, per variant and overall (`orchestrate status SWEEP`, the Sweep
page).

A bar runs from the attempt's started_at to its finished_at (the GPU time it held; jobs
that shared one engine process, `reuse: repeats`, hold consecutive parts of its time, the
first with the engine's start). An attempt still running ends now; one left running by a
lost coordinator ends at the last heartbeat. The phases come from the stored result's figures,
which keeps durations, not timestamps, so they are placed: the timed generate (elapsed_s)
ends at the attempt's finished_at, the engine start (start_s: load, profile, compile,
capture, warm-up) just before it. Teardown and the runner's checks after the generate, and
process start and imports before the engine start, thus all fall into the part of the bar
before the start phase: the phases are placed as late as they can be, and clipped to the
bar. A bar is never shorter than its phases (clocks of other hosts, records written by other
means): held time is the longer of the two.

Efficiency counts finished attempts only (a running one has not reached its generate yet):
every outcome's held time, failed and lost included, against the generates of the
succeeded ones."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from db.models import Attempt, Job, Result, Sweep
from db.read.plan import Plan, sweep_plan
from db.read.sweeps import LOST_ATTEMPT, lost_for
from db.store import Store, as_utc

ALL = "all"  # the overall row of efficiency()
EFFICIENCY = "efficiency (timed generate ÷ GPU time held)"  # its name where it is shown
ENGINE_START, GENERATE = "engine start", "generate"  # a result's phases, wherever placed


@dataclass(frozen=True)
class Bar:
    job_id: int
    attempt: int  # the attempt's number within its job
    variant: str
    max_num_seqs: int
    repeat: int
    host: str
    gpu: str
    outcome: str  # an attempt outcome, or LOST_ATTEMPT
    start: datetime
    end: datetime
    start_s: float | None  # engine start (a succeeded attempt's record), else None
    generate_s: float | None  # the timed generate

    @property
    def lane(self) -> str:
        return f"{self.host} / {self.gpu}"

    @property
    def held_s(self) -> float:
        wall = (self.end - self.start).total_seconds()
        return max(wall, (self.start_s or 0.0) + (self.generate_s or 0.0))

    @property
    def finished(self) -> bool:
        return self.outcome not in ("running", LOST_ATTEMPT)

    def phases(self) -> list[tuple[str, datetime, datetime]]:
        """(ENGINE_START | GENERATE, from, to), placed as the module says."""
        if self.generate_s is None:
            return []
        gen_from = max(self.start, self.end - timedelta(seconds=self.generate_s))
        start_from = max(self.start, gen_from - timedelta(seconds=self.start_s or 0.0))
        return [(ENGINE_START, start_from, gen_from), (GENERATE, gen_from, self.end)]


@dataclass(frozen=True)
class Efficiency:
    variant: str  # or ALL
    attempts: int
    held_s: float
    generate_s: float
    start_s: float  # engine starts (load, profile, compile, capture, warm-up): what reuse saves

    @property
    def ratio(self) -> float | None:
        return self.generate_s / self.held_s if self.held_s > 0 else None

    @property
    def start_share(self) -> float | None:
        return self.start_s / self.held_s if self.held_s > 0 else None

    def text(self) -> str:
        pct = "—" if self.ratio is None else f"{self.ratio:.0%}"
        start = "" if self.start_share is None else f", engine starts {self.start_share:.0%}"
        return (f"{self.variant}: {pct} ({self.generate_s:,.1f} s timed generate of "
                f"{self.held_s:,.1f} s GPU time held, {self.attempts} attempt(s){start})")


def attempt_bars(store: Store, sweep: str, *, every: bool = False) -> list[Bar]:
    """Every attempt of a sweep (of the current file's jobs unless `every`), oldest first."""
    now = datetime.now(UTC)
    plan = sweep_plan(store, sweep) or Plan(None)
    with store.session() as s:
        sw = s.execute(select(Sweep.owner, Sweep.heartbeat_at)
                       .where(Sweep.name == sweep)).first()
        rows = s.execute(
            select(Job.id, Job.key, Job.variant, Job.max_num_seqs, Job.repeat, Attempt.number,
                   Attempt.host, Attempt.gpu, Attempt.outcome, Attempt.started_at,
                   Attempt.finished_at, Result.start_s, Result.elapsed_s)
            .join(Sweep, Sweep.id == Job.sweep_id).join(Attempt, Attempt.job_id == Job.id)
            .outerjoin(Result, Result.attempt_id == Attempt.id)
            .where(Sweep.name == sweep).order_by(Attempt.started_at, Attempt.id)).all()
    lost = sw is not None and lost_for(sw.owner, as_utc(sw.heartbeat_at), now) is not None
    out = []
    for r in rows:
        if not (every or plan.current(r.key)):
            continue
        outcome, end = r.outcome, as_utc(r.finished_at)
        if end is None:
            outcome = LOST_ATTEMPT if lost and outcome == "running" else outcome
            end = as_utc(sw.heartbeat_at) if lost and sw.heartbeat_at else now
        start = as_utc(r.started_at)
        out.append(Bar(r.id, r.number, plan.name(r.key, r.variant), r.max_num_seqs, r.repeat,
                       r.host, r.gpu, outcome, start, max(start, end), r.start_s, r.elapsed_s))
    return out


def efficiency(bars: list[Bar]) -> list[Efficiency]:
    """Timed generate ÷ GPU time held per variant (in order of first attempt), then ALL;
    empty when no attempt has finished."""
    done = [b for b in bars if b.finished]
    if not done:
        return []

    def of(name: str, group: list[Bar]) -> Efficiency:
        return Efficiency(name, len(group), sum(b.held_s for b in group),
                          sum(b.generate_s or 0.0 for b in group),
                          sum(b.start_s or 0.0 for b in group))

    variants = list(dict.fromkeys(b.variant for b in done))
    return [*(of(v, [b for b in done if b.variant == v]) for v in variants), of(ALL, done)]
