"""What a job's row shows that its table has no column for, derived from the job as it
ran: its max_model_len, and its engine options spread into a column each. Without pandas,
so `orchestrate status` and `--dry-run` start without it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

# An engine option spread into a column of its own (the sweep's option axes, and on the
# dashboard every option, to filter by); a job that leaves it at its default says so.
OPTION_PREFIX = "option: "
DEFAULT = "default"


def max_model_len(job_spec: str) -> int | None:
    """A job's max_model_len, from the BenchJob JSON it ran (the jobs table has no column)."""
    try:
        return json.loads(job_spec).get("max_model_len")
    except (ValueError, AttributeError):
        return None


def option_columns(df: pd.DataFrame, names) -> pd.DataFrame:
    """Spread the `options` JSON column into one OPTION_PREFIX + name column per name."""
    if df.empty or "options" not in df or not names:
        return df
    parsed = [json.loads(o) if isinstance(o, str) else (o or {}) for o in df["options"]]
    out = df.copy()
    for name in names:
        out[OPTION_PREFIX + name] = [plain(p.get(name, DEFAULT)) for p in parsed]
    return out


def plain(v):
    """An option's value as a table cell holds it: a scalar as it is, anything else JSON."""
    return v if isinstance(v, str | int | float | bool) else json.dumps(v, sort_keys=True)
