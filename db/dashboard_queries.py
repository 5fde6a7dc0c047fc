"""Read-only queries the dashboard needs beyond db.status and db.results: sweeps as a frame
with a state, a sweep's jobs with their last attempt, one job in full, hosts.

Every function takes an open Store and returns plain data (DataFrames, dicts); nothing here
writes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
from sqlalchemy import func, select

from db.models import JOB_STATES, Attempt, Host, Job, Result, Sweep
from db.store import JobCounts, as_utc

# A coordinator that has not refreshed its heartbeat for this long is taken for gone (the
# coordinator beats every 5 s and gives a sweep up as stale after 60 s).
STALE_AFTER = timedelta(seconds=60)
SWEEP_COLUMNS = ["id", "name", "state", "done", "running", "failed", "pending", "total",
                 "progress", "started", "finished", "duration_s", "hosts", "baseline", "owner"]


def sweep_state(counts, owner: str | None, heartbeat_at: datetime | None,
                now: datetime | None = None) -> str:
    """running | done | failed | stopped | empty: one word for a sweep."""
    now = now or datetime.now(UTC)
    alive = bool(owner and heartbeat_at and now - as_utc(heartbeat_at) < STALE_AFTER)
    if alive or (counts.running and owner):
        return "running"
    if counts.total == 0:
        return "empty"
    if counts.pending or counts.running:
        return "stopped"  # a coordinator stopped (or died) before the end; rerun resumes
    if counts.failed:
        return "failed"
    return "done"


def sweeps_frame(store, now: datetime | None = None) -> pd.DataFrame:
    """One row per sweep, oldest first: state, job counts, start, duration, host count."""
    now = now or datetime.now(UTC)
    # Like db.status.sweep_rows, but a sweep that never finished has no finish time.
    with store.session() as s:
        sweeps = list(s.execute(select(
            Sweep.id, Sweep.name, Sweep.baseline, Sweep.owner, Sweep.heartbeat_at,
            Sweep.created_at, Sweep.last_started_at, Sweep.last_finished_at,
        ).order_by(Sweep.created_at)))
        counts: dict[int, dict[str, int]] = {}
        for sid, state, n in s.execute(
            select(Job.sweep_id, Job.state, func.count()).group_by(Job.sweep_id, Job.state)
        ):
            counts.setdefault(sid, {})[state] = n
        hosts = dict(s.execute(
            select(Job.sweep_id, func.count(func.distinct(Attempt.host)))
            .join(Attempt, Attempt.job_id == Job.id).group_by(Job.sweep_id)
        ).all())
    out = []
    for r in sweeps:
        c = JobCounts(**{k: v for k, v in counts.get(r.id, {}).items() if k in JOB_STATES})
        state = sweep_state(c, r.owner, r.heartbeat_at, now)
        started = _utc(r.last_started_at) or _utc(r.created_at)
        finished = _utc(r.last_finished_at)
        end = now if state == "running" else finished
        out.append({
            "id": r.id, "name": r.name, "state": state, "done": c.succeeded,
            "running": c.running, "failed": c.failed, "pending": c.pending, "total": c.total,
            "progress": (c.succeeded + c.failed) / c.total if c.total else 0.0,
            "started": started, "finished": finished,
            "duration_s": max(0.0, (end - started).total_seconds()) if end and started
            else None,
            "hosts": hosts.get(r.id, 0), "baseline": r.baseline, "owner": r.owner,
        })
    return pd.DataFrame(out, columns=SWEEP_COLUMNS)


def _utc(t: datetime | None) -> datetime | None:
    return as_utc(t) if t is not None else None


def sweep_info(store, name: str) -> dict | None:
    with store.session() as s:
        sw = s.scalar(select(Sweep).where(Sweep.name == name))
        if sw is None:
            return None
        return {"id": sw.id, "name": sw.name, "baseline": sw.baseline,
                "spec_yaml": sw.spec_yaml, "owner": sw.owner}


def sweep_jobs(store, name: str) -> pd.DataFrame:
    """Every job of a sweep (in sweep order) with its configuration and its last attempt."""
    with store.session() as s:
        last = (select(Attempt.job_id, func.max(Attempt.number).label("n"))
                .group_by(Attempt.job_id).subquery())
        q = (select(Job, Attempt, Result.output_tok_s, Result.gpu_name)
             .join(Sweep, Sweep.id == Job.sweep_id)
             .outerjoin(last, last.c.job_id == Job.id)
             .outerjoin(Attempt, (Attempt.job_id == Job.id) & (Attempt.number == last.c.n))
             .outerjoin(Result, Result.job_id == Job.id)
             .where(Sweep.name == name).order_by(Job.ordinal))
        rows = s.execute(q).all()
    return pd.DataFrame([
        {"job_id": j.id, "ordinal": j.ordinal, "variant": j.variant, "engine": j.engine,
         "options": json.dumps(j.options, sort_keys=True), "model": j.model,
         "workload": j.workload, "workload_fingerprint": j.workload_fingerprint,
         "max_num_seqs": j.max_num_seqs, "gpu_memory_utilization": j.gpu_memory_utilization,
         "repeat": j.repeat, "state": j.state,
         "attempts": a.number if a else 0, "host": a.host if a else None,
         "gpu": a.gpu if a else None, "outcome": a.outcome if a else None,
         "error_kind": a.error_kind if a else None, "error": a.error if a else None,
         "elapsed_s": a.elapsed_s if a else None, "output_tok_s": tok_s,
         "gpu_name": card}
        for j, a, tok_s, card in rows
    ], columns=["job_id", "ordinal", "variant", "engine", "options", "model", "workload",
                "workload_fingerprint", "max_num_seqs", "gpu_memory_utilization", "repeat",
                "state", "attempts", "host", "gpu", "outcome", "error_kind", "error",
                "elapsed_s", "output_tok_s", "gpu_name"])


def job_detail(store, job_id: int) -> dict | None:
    """One job: its configuration, sweep, attempts (oldest first) and result record."""
    with store.session() as s:
        row = s.execute(select(Job, Sweep.name).join(Sweep, Sweep.id == Job.sweep_id)
                        .where(Job.id == job_id)).first()
        if row is None:
            return None
        j, sweep = row
        attempts = list(s.scalars(select(Attempt).where(Attempt.job_id == job_id)
                                  .order_by(Attempt.number)))
        result = s.scalar(select(Result).where(Result.job_id == job_id))
        return {
            "id": j.id, "sweep": sweep, "key": j.key, "ordinal": j.ordinal,
            "variant": j.variant, "engine": j.engine, "options": j.options, "model": j.model,
            "workload": j.workload, "workload_fingerprint": j.workload_fingerprint,
            "max_num_seqs": j.max_num_seqs, "gpu_memory_utilization": j.gpu_memory_utilization,
            "repeat": j.repeat, "state": j.state, "spec": j.spec,
            "attempts": [
                {"number": a.number, "host": a.host, "gpu": a.gpu, "outcome": a.outcome,
                 "started_at": as_utc(a.started_at),
                 "finished_at": _utc(a.finished_at),
                 "duration_s": _duration(a), "error_kind": a.error_kind, "error": a.error,
                 "log_tail": a.log_tail}
                for a in attempts
            ],
            "result": None if result is None else {
                "attempt_id": result.attempt_id, "host": result.host,
                "gpu_name": result.gpu_name, "record": dict(result.record or {}),
            },
        }


def _duration(a: Attempt) -> float | None:
    if a.elapsed_s is not None:
        return a.elapsed_s
    end = as_utc(a.finished_at) if a.finished_at else datetime.now(UTC)
    return (end - as_utc(a.started_at)).total_seconds()


def job_ids_near(store, job_id: int) -> list[int]:
    """Ids of the jobs of the same sweep (for a job picker)."""
    with store.session() as s:
        sid = s.scalar(select(Job.sweep_id).where(Job.id == job_id))
        if sid is None:
            return []
        return list(s.scalars(select(Job.id).where(Job.sweep_id == sid).order_by(Job.ordinal)))


def hosts_frame(store) -> pd.DataFrame:
    """The SSH inventory: one row per host with state, last check, GPU and jobs run."""
    with store.session() as s:
        hosts = list(s.scalars(select(Host).order_by(Host.name)))
        runs = dict(s.execute(select(Attempt.host, func.count()).group_by(Attempt.host)).all())
    return pd.DataFrame([
        {"name": h.name, "address": f"{h.address}:{h.port}", "user": h.user,
         "state": h.state, "last_check": _utc(h.last_check_at),
         "gpu": gpu_of(h.last_check), "jobs_run": runs.get(h.name, 0) or runs.get(h.address, 0),
         "check": _check_summary(h.last_check)}
        for h in hosts
    ], columns=["name", "address", "user", "state", "last_check", "gpu", "jobs_run", "check"])


def attempt_hosts(store) -> pd.DataFrame:
    """Every host that ran an attempt (inventory or not): slots, attempts by outcome, last."""
    with store.session() as s:
        rows = s.execute(
            select(Attempt.host, Attempt.outcome, func.count(), func.max(Attempt.started_at),
                   func.count(func.distinct(Attempt.gpu)))
            .group_by(Attempt.host, Attempt.outcome)
        ).all()
        gpus = s.execute(select(Attempt.host, Attempt.gpu).distinct()).all()
        cards = s.execute(select(Result.host, Result.gpu_name).distinct()).all()
    out: dict[str, dict] = {}
    for host, outcome, n, last, _ in rows:
        r = out.setdefault(host, {"host": host, "slots": "", "cards": "", "attempts": 0,
                                  "succeeded": 0, "failed": 0, "last_attempt": None})
        r["attempts"] += n
        if outcome == "succeeded":
            r["succeeded"] += n
        elif outcome != "running":
            r["failed"] += n
        last = _utc(last)
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
