"""A sweep as its file reads now: which stored jobs the current sweep file still has, the
name each one goes by there, its baseline and its option axes.

Nothing of this is stored twice. The sweeps table keeps the file the last `orchestrate
sweep` ran (spec_yaml); re-expanding it with the coordinator's own rules (orchestrator/
spec.py, the one home of expansion and job keys) gives the current job keys and names.
A job's key leaves out its variant's name, so a renamed variant keeps its results and shows
under its new name; a job only an earlier version of the file had is not current (readers
hide it unless asked for every job). A stored file that no longer parses (written by
another version) leaves every job current under the name it was stored with."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from sqlalchemy import select

from db.models import Sweep
from db.store import Store


@dataclass(frozen=True)
class Plan:
    baseline: str | None
    option_axes: tuple[str, ...] = ()  # matrix axes that are engine options, in file order
    names: dict[str, str] | None = field(default=None, repr=False)  # job key -> variant

    def current(self, key: str) -> bool:
        return self.names is None or key in self.names

    def name(self, key: str, stored: str) -> str:
        return (self.names or {}).get(key, stored)


def sweep_plan(store: Store, sweep: str) -> Plan | None:
    """The plan of the sweep named, from its stored file; None if there is no such sweep."""
    with store.session() as s:
        row = s.execute(select(Sweep.spec_yaml, Sweep.baseline)
                        .where(Sweep.name == sweep)).first()
    return None if row is None else plan_of(row.spec_yaml, row.baseline)


@lru_cache(maxsize=64)  # a dashboard page asks again every refresh; the text is the key
def plan_of(spec_yaml: str, stored_baseline: str | None = None) -> Plan:
    # The one expansion of a sweep file is the coordinator's; db depends on it only here,
    # and only at call time.
    from orchestrator.spec import CORE_AXES, parse

    try:
        spec = parse(spec_yaml)
        planned = spec.expand()
    except (ValueError, TypeError):
        return Plan(stored_baseline)
    return Plan(spec.baseline,
                tuple(a for a in spec.file.matrix if a not in CORE_AXES),
                {p.key: p.job.variant for p in planned})
