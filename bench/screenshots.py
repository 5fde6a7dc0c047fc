"""Screenshots of every dashboard page on a real database, in Debian's headless chromium:
`python bench/screenshots.py --db bench/results/phase2/phase2.db --sweep phase2 --out DIR`.

The pages are served by `orchestrate dashboard` and loaded the way tests/dashboard/
test_browser.py loads them (the page is shot once its markers are in the DOM). The Job page
shows the job given by --job, by default the sweep's first succeeded job of --variant."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from sqlalchemy import select

from db.models import Job, Sweep
from db.store import Store
from tests.dashboard.test_browser import CHROMIUM, render, serve

MARKERS = {
    "sweeps": ['data-testid="stDataFrame"'],
    "sweep": ['data-testid="stVegaLiteChart"', 'data-testid="stDataFrame"'],
    "job": ['data-testid="stDataFrame"', "BenchResult", 'data-testid="stVegaLiteChart"'],
    "compare": ['data-testid="stDataFrame"'],
}
# Each page's height in pixels, with a sweep of some 30 configurations on one card.
HEIGHTS = {"sweeps": 900, "sweep": 3800, "job": 2700, "compare": 2200}


def first_job(db: str, sweep: str, variant: str) -> int:
    store = Store(db, read_only=True)
    with store.session() as s:
        job = s.scalar(select(Job.id).join(Sweep, Sweep.id == Job.sweep_id)
                       .where(Sweep.name == sweep, Job.variant == variant,
                              Job.state == "succeeded").order_by(Job.ordinal))
    store.close()
    if job is None:
        raise SystemExit(f"sweep {sweep!r} has no succeeded job of variant {variant!r}")
    return job


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", required=True, help="SQLite file or database URL")
    p.add_argument("--sweep", required=True)
    p.add_argument("--variant", default="nano", help="the Job page's job's variant")
    p.add_argument("--job", type=int, help="the Job page's job (default: see above)")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"), default=("vllm", "nano"),
                   help="the Compare page's two variants of the sweep")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--height", type=int, help="the window's height in pixels, every page: a "
                   "screenshot holds what fits in it (default: each page's, HEIGHTS)")
    a = p.parse_args()
    if CHROMIUM is None:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    db = a.db if "://" in a.db else f"sqlite:///{Path(a.db).resolve()}"
    job = a.job or first_job(db, a.sweep, a.variant)
    paths = {"sweeps": "", "sweep": f"sweep?sweep={a.sweep}", "job": f"job?job={job}",
             "compare": f"compare?a={a.sweep}&variant_a={a.compare[0]}"
                        f"&variant_b={a.compare[1]}"}
    a.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, serve(db, Path(tmp) / "server.log") as base:
        for name, path in paths.items():
            render(f"{base}/{path}", Path(tmp), name, MARKERS[name],
                   height=a.height or HEIGHTS[name])
            shutil.copy(Path(tmp) / f"{name}.png", a.out / f"{name}.png")
            print(f"{a.out / name}.png: {base}/{path}")


if __name__ == "__main__":
    main()
