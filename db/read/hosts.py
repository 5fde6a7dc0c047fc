"""Hosts: the SSH inventory's rows (state, last check) as `orchestrate hosts list` and the
dashboard show them, and every host that ran an attempt, in the inventory or not."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import func, select

from db.models import Attempt, Host, Result
from db.store import Store, as_utc


def host_rows(store: Store) -> list[Host]:
    """The inventory's rows in the database, by name."""
    with store.session() as s:
        return list(s.scalars(select(Host).order_by(Host.name)))


def hosts_frame(store: Store) -> pd.DataFrame:
    """The SSH inventory: one row per host with state, last check, GPU and jobs run."""
    hosts = host_rows(store)
    with store.session() as s:
        runs = dict(s.execute(select(Attempt.host, func.count()).group_by(Attempt.host)).all())
    return pd.DataFrame([
        {"name": h.name, "address": f"{h.address}:{h.port}", "user": h.user,
         "state": h.state, "last_check": as_utc(h.last_check_at),
         "gpu": gpu_of(h.last_check), "jobs_run": runs.get(h.name, 0) or runs.get(h.address, 0),
         "check": _check_summary(h.last_check)}
        for h in hosts
    ], columns=["name", "address", "user", "state", "last_check", "gpu", "jobs_run", "check"])


def attempt_hosts(store: Store) -> pd.DataFrame:
    """Every host that ran an attempt (inventory or not): slots, attempts by outcome, last."""
    with store.session() as s:
        rows = s.execute(
            select(Attempt.host, Attempt.outcome, func.count(), func.max(Attempt.started_at))
            .group_by(Attempt.host, Attempt.outcome)
        ).all()
        gpus = s.execute(select(Attempt.host, Attempt.gpu).distinct()).all()
        cards = s.execute(select(Result.host, Result.gpu_name).distinct()).all()
    out: dict[str, dict] = {}
    for host, outcome, n, last in rows:
        r = out.setdefault(host, {"host": host, "slots": "", "cards": "", "attempts": 0,
                                  "succeeded": 0, "failed": 0, "last_attempt": None})
        r["attempts"] += n
        if outcome == "succeeded":
            r["succeeded"] += n
        elif outcome != "running":
            r["failed"] += n
        last = as_utc(last)
        if last and (r["last_attempt"] is None or last > r["last_attempt"]):
            r["last_attempt"] = last
    for host, gpu in gpus:
        if host in out:
            out[host]["slots"] = ", ".join(filter(None, [out[host]["slots"], gpu]))
    for host, card in cards:
        if host in out:
            out[host]["cards"] = ", ".join(filter(None, [out[host]["cards"], card]))
    return pd.DataFrame(list(out.values()), columns=["host", "slots", "cards", "attempts",
                                                     "succeeded", "failed", "last_attempt"])


def gpu_of(check: dict | None) -> str:
    """The GPU(s) a host check found, however the check spelled them."""
    if not check:
        return ""
    for key in ("gpus", "gpu", "gpu_name", "nvidia_smi"):
        v = check.get(key)
        if not v:
            continue
        if isinstance(v, str):
            return v
        if isinstance(v, dict):
            return str(v.get("name") or v)
        if isinstance(v, list):
            names = [str(g.get("name", g)) if isinstance(g, dict) else str(g) for g in v]
            counted = {n: names.count(n) for n in names}
            return ", ".join(f"{c}× {n}" if c > 1 else n for n, c in counted.items())
    return ""


def _check_summary(check: dict | None) -> str:
    if not check:
        return ""
    error = check.get("error")
    if error:
        return str(error)
    keep = {k: v for k, v in check.items() if k not in ("gpus", "gpu", "gpu_name", "nvidia_smi")
            and isinstance(v, str | int | float)}
    return ", ".join(f"{k} {v}" for k, v in keep.items())
