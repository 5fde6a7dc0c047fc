"""Where a sweep's GPU time went, per engine: the held time of its finished attempts
(started_at to finished_at) split by what each result records: imports (process start to
engine start), start (load, profile, compile, capture), warm-up, timed generate, teardown
(a process's wall_s less its last result line's result_at_s), the runner's GPU-idle checks
(once a process), attempts without a result, and the rest that no record covers (before
commit 3ffb66a: the imports of torch and vLLM; always: the coordinator's own gaps). Reads
the SQLite files that device sweeps return:

    python bench/held_time.py bench/results/phase2-reuse/phase2-reuse.db ...
"""

import json
import sqlite3
import sys
from collections import defaultdict
from datetime import datetime

START = ("load_s", "profile_s", "compile_s", "capture_s")
QUERY = """SELECT j.engine, a.started_at, a.finished_at, r.record FROM attempts a
           JOIN jobs j ON j.id = a.job_id LEFT JOIN results r ON r.attempt_id = a.id
           WHERE a.finished_at IS NOT NULL"""


def split(db: str) -> dict[str, dict[str, float]]:
    parts: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    teardown: dict[tuple, float] = {}  # a process (its engine, configuration, wall_s) -> s
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        for engine, started, finished, record in c.execute(QUERY):
            held = (datetime.fromisoformat(finished) - datetime.fromisoformat(started))
            part = parts[engine]
            part["held"] += held.total_seconds()
            if record is None:
                part["no result"] += held.total_seconds()
                continue
            r = json.loads(record)
            cond = r.get("conditions") or {}
            part["imports"] += r.get("imports_s") or 0.0
            part["start"] += sum(r.get(k) or 0.0 for k in START)
            part["warm-up"] += r.get("warmup_s") or 0.0
            part["generate"] += r["elapsed_s"]
            if r.get("engine_shared") in (None, 0):  # the process's first job carries them
                part["GPU-idle checks"] += ((cond.get("gpu_wait_before_s") or 0.0)
                                            + (cond.get("gpu_wait_after_s") or 0.0))
            if cond.get("wall_s") is not None and cond.get("result_at_s") is not None:
                key = (engine, r["variant"], r["max_num_seqs"], r["gpu_memory_utilization"],
                       cond["wall_s"])
                after = cond["wall_s"] - cond["result_at_s"]
                teardown[key] = min(after, teardown.get(key, after))  # the last line's
    for (engine, *_), seconds in teardown.items():
        parts[engine]["teardown"] += seconds
    return parts


def main(paths: list[str]) -> None:
    for db in paths:
        print(db)
        for engine, part in sorted(split(db).items()):
            held = part.pop("held")
            rest = held - sum(part.values())
            cells = ", ".join(f"{k} {v:.1f} s ({v / held:.0%})" for k, v in part.items())
            print(f"  {engine}: held {held:.1f} s: {cells}, rest {rest:.1f} s ({rest / held:.0%})")


if __name__ == "__main__":
    main(sys.argv[1:])
