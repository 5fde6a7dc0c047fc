"""Rented GPU boxes reached only over SSH (AutoDL style). Ray runs on the coordinator; one
Ray actor per remote GPU slot holds a paramiko connection and runs each job there with the
same runner as everywhere else, `python -m orchestrator.executors.process`, started in its
own session in a per-attempt directory:

    <workdir>/attempts/<slot>-<token>/  job.json  pid  runner.log  log.jsonl  outcome.json

job.json holds the task's jobs (a list), log.jsonl the job process's output as the runner
reads it (a LogChunk a line, ASCII JSON) and outcome.json their Outcomes (a list).

The actor polls that directory, each poll reading what log.jsonl gained since the last (by
its offset, whole lines, at most LOG_READ_BYTES a poll), and streams it back as the Ray
executors do: the chunks, then the Outcomes (base.stream). A host that does not answer for
ssh_liveness_s seconds loses the attempt ("lost", so the sweep retries it elsewhere);
whatever that attempt left running is killed, unread, the next time the slot's host
answers, so a job never counts twice. A watchdog beside each runner kills its job when no
poll came for twice that long (the coordinator died or lost the host), and a coordinator
that starts kills every attempt a dead predecessor left on its hosts: no orphan keeps a
GPU.

After a lost attempt a host gets no job until a probe reaches it again; a host whose probe
fails, or that loses QUARANTINE_AFTER attempts in a row, is quarantined: no jobs for
ssh_quarantine_s (engine.settings), then a probe again. One coordinator drives a host at a time."""

from __future__ import annotations

import contextlib
import json
import shlex
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ray

from engine.settings import settings
from orchestrator.executors.base import ExecutorUnavailable, Outcome, RayExecutor, Slot, Task
from orchestrator.hosts import Host, Inventory, probe_host, slots_of
from orchestrator.ssh import Connection, SSHError

# The liveness window, the watchdog and the quarantine come from engine.settings
# ($BENCHSWEEP_SSH_LIVENESS_S, _WATCHDOG_S, _QUARANTINE_S).
POLL_S = 1.0
# The most of log.jsonl one poll reads: more than its longest line (a chunk of at most
# base.READ_MAX_BYTES, each byte at most 6 in JSON's ASCII escapes), so a poll always ends
# in a whole line.
LOG_READ_BYTES = 8 << 20
QUARANTINE_AFTER = 3
PROBE_TIMEOUT_S = 10.0

# Kill what attempt directories matching $1 still run (the pid must still be our runner,
# not a reused number), then remove them. Prints what it killed.
_REAP = r"""
for d in $1; do
  [ -d "$d" ] && [ "$d" != "$2" ] || continue
  p=$(cat "$d/pid" 2>/dev/null)
  if [ -n "$p" ] && grep -qa "$d" "/proc/$p/cmdline" 2>/dev/null; then
    kill -TERM -- "-$p" 2>/dev/null; sleep 1; kill -KILL -- "-$p" 2>/dev/null
    echo "killed $d"
  fi
  rm -rf "$d"
done
true
"""

# Liveness first, then the outcome, then the log: a runner that ends between the two still
# shows OUTCOME, and a runner writes the whole log before its outcome. The log section is
# `LOG N` and the N bytes of log.jsonl from offset $2 (at most $3).
_STATUS = r"""
cd "$1" || { echo "LOG 0"; echo GONE; exit 0; }
touch alive
kill -0 "$(cat pid 2>/dev/null)" 2>/dev/null && running=yes || running=no
[ -s outcome.json ] && ended=yes || ended=no
size=$(stat -c %s log.jsonl 2>/dev/null || echo 0)
n=$(( size - $2 )); [ "$n" -gt "$3" ] && n=$3; [ "$n" -lt 0 ] && n=0
echo "LOG $n"
[ "$n" -gt 0 ] && tail -c +$(( $2 + 1 )) log.jsonl | head -c "$n"
if [ $ended = yes ]; then echo OUTCOME; cat outcome.json
elif [ "$running" = yes ]; then echo RUNNING
else echo DEAD; tail -c 4000 runner.log 2>/dev/null; fi
"""


# Beside each runner on the host: kill its group when the coordinator has not polled for $2
# seconds (the coordinator died or lost the host), so no orphan holds the GPU for long.
_WATCHDOG = r"""
while kill -0 "$1" 2>/dev/null; do
  sleep 5
  seen=$(stat -c %Y "$3/alive" 2>/dev/null || echo 0)
  if [ $(( $(date +%s) - seen )) -gt "$2" ]; then
    echo "watchdog: no poll for $2 s; killing the job" >> "$3/runner.log"
    kill -TERM -- "-$1" 2>/dev/null; sleep 2; kill -KILL -- "-$1" 2>/dev/null
  fi
done
"""


def _script(body: str, *args: str) -> str:
    return f"bash -c {shlex.quote(body)} _ " + " ".join(shlex.quote(a) for a in args)


def reap(conn: Connection, host: Host, pattern: str = "*", keep: str = "") -> list[str]:
    """Kill and remove attempt directories of `host` matching the glob, but `keep`."""
    attempts = conn.abspath(host.config.workdir.rstrip("/")) + "/attempts"
    out = conn.check(_script(_REAP, f"{attempts}/{pattern}", keep), timeout_s=30)
    return [ln.removeprefix("killed ") for ln in out.splitlines() if ln.startswith("killed ")]


def slot_key(slot: Slot) -> str:
    return slot.name.replace("/", "_")


def _wire(outs: list[Outcome]) -> dict:
    return {"outcomes": [out.to_dict() for out in outs]}


def _log_section(text: str) -> tuple[list[dict], int, bool, str]:
    """A status answer's log section: the chunks of its whole lines, the bytes they took
    (the offset moves by that), whether the read was cut at LOG_READ_BYTES (more is left),
    and the rest of the answer. The log is ASCII: a byte is a character."""
    head, _, rest = text.partition("\n")
    n = int(head.removeprefix("LOG "))
    data, rest = rest[:n], rest[n:]
    whole = data[:data.rfind("\n") + 1]
    return ([{"log": json.loads(line)} for line in whole.splitlines()], len(whole),
            n >= LOG_READ_BYTES, rest)


@ray.remote(num_cpus=0, max_concurrency=2, max_restarts=0)
class SlotWorker:
    """Runs one job at a time on one remote slot; `kill` may be called while `run` runs."""

    def __init__(self, host: Host, slot: Slot, known_hosts: str, liveness_s: float):
        self.host, self.slot, self.known_hosts = host, slot, known_hosts
        self.liveness_s = liveness_s
        self.watchdog_s = int(settings().ssh_watchdog_s or max(2 * liveness_s, 20))
        self.conn: Connection | None = None
        self.current: str | None = None  # the attempt directory running now
        self.cancelled = threading.Event()

    def _connect(self, deadline: float) -> Connection:
        while True:
            if self.conn is not None and self.conn.alive():
                return self.conn
            if self.conn is not None:
                self.conn.close()
                self.conn = None
            left = deadline - time.monotonic()
            if left <= 0:
                raise SSHError(f"{self.host.name}: no answer for {self.liveness_s:g} s")
            try:
                self.conn = Connection(self.host.endpoint, Path(self.known_hosts),
                                       timeout_s=min(10.0, max(left, 1.0)), attempts=1)
                # Anything an earlier attempt on this slot left (a partition cut us off
                # from it) dies unread before this slot runs anything else.
                reap(self.conn, self.host, f"{slot_key(self.slot)}-*", self.current or "")
                return self.conn
            except SSHError:
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                if time.monotonic() + 2 > deadline:
                    raise
                time.sleep(2)

    def run(self, jobs: list[str], timeout_s: float, nice: int) -> Iterator[dict]:
        """The task's stream (base.stream): the job process's log chunks, its Outcomes."""
        self.cancelled.clear()
        task = Task(self.slot, len(jobs))
        started = time.monotonic()
        try:
            conn = self._connect(started + self.liveness_s)
            d = self._start(conn, jobs, timeout_s, nice)
        except SSHError as e:
            yield _wire(task.lost(f"could not start the job: {e}"))
            return
        self.current = d
        try:
            yield from self._follow(d, task, started)
        finally:
            self.current = None

    def _start(self, conn: Connection, jobs: list[str], timeout_s: float, nice: int) -> str:
        h, s = self.host, self.slot
        wd = conn.abspath(h.config.workdir.rstrip("/"))
        d = f"{wd}/attempts/{slot_key(s)}-{uuid.uuid4().hex[:12]}"
        conn.check(f"mkdir -p {shlex.quote(d)}")
        conn.put_bytes(f"{d}/job.json", ("[" + ", ".join(jobs) + "]").encode())
        runner = " ".join(shlex.quote(a) for a in [
            conn.abspath(h.python), "-m", "orchestrator.executors.process",
            "--job", f"{d}/job.json", "--out", f"{d}/outcome.json", "--gpu", s.gpu,
            "--cuda-visible-devices", s.cuda_visible_devices, "--timeout", f"{timeout_s:g}",
            "--nice", str(nice), "--log-out", f"{d}/log.jsonl",
            *(["--threads", str(s.threads)] if s.threads else [])])
        q = shlex.quote(d)
        # setsid: the runner leads its own session, so it outlives this SSH session and its
        # whole group can be killed by the pid it writes.
        inner = shlex.quote(f"echo $$ > {q}/pid; exec {runner}")
        conn.check(h.shell(
            f"cd {shlex.quote(wd)}/src || exit 1\n"
            f"setsid sh -c {inner}"
            f" > {q}/runner.log 2>&1 < /dev/null &\n"
            f"for i in $(seq 100); do test -s {q}/pid && break; sleep 0.1; done\n"
            f"test -s {q}/pid || exit 1\ntouch {q}/alive\n"
            f"setsid bash -c {shlex.quote(_WATCHDOG)} _ \"$(cat {q}/pid)\" {self.watchdog_s} {q}"
            f" > /dev/null 2>&1 < /dev/null &"))
        return d

    def _follow(self, d: str, task: Task, started: float) -> Iterator[dict]:
        last_contact = time.monotonic()
        offset = 0  # of log.jsonl, read up to here
        while True:
            if self.cancelled.is_set():
                yield _wire([Outcome("cancelled", self.host.name, self.slot.gpu,
                                     error="cancelled", error_kind="cancelled")] * task.jobs)
                return
            try:
                conn = self._connect(last_contact + self.liveness_s)
                text = conn.check(_script(_STATUS, d, str(offset), str(LOG_READ_BYTES)),
                                  timeout_s=max(1.0, min(10.0, last_contact + self.liveness_s
                                                         - time.monotonic())))
                last_contact = time.monotonic()
                chunks, took, cut, text = _log_section(text)
            except SSHError as e:
                if self.conn is not None:
                    self.conn.close()
                    self.conn = None
                if time.monotonic() - last_contact >= self.liveness_s:
                    return _wire(task.lost(f"host stopped answering: {e}"))
                time.sleep(POLL_S)
                continue
            offset += took
            for chunk in chunks:  # noqa: UP028 - Ray send()s to its generators; a list takes none
                yield chunk
            state, _, rest = text.partition("\n")
            if state == "OUTCOME" and not cut:  # else more of the log is left to read
                outs = json.loads(rest)
                for out in outs:
                    out["host"] = self.host.name
                self._remove(d)
                yield {"outcomes": outs}
                return
            if state in ("DEAD", "GONE"):
                # The runner died without an outcome: killed with the host's processes,
                # or the box rebooted. Not the job's fault: lost, and retried.
                self._remove(d)
                yield _wire(task.lost("the job's runner died on the host without an outcome",
                                      log_tail=rest[-4000:],
                                      elapsed_s=time.monotonic() - started))
                return
            if state != "OUTCOME":
                time.sleep(POLL_S)

    def _remove(self, d: str) -> None:
        with contextlib.suppress(SSHError, AttributeError):  # else reaped on next connect
            self.conn.check(f"rm -rf {shlex.quote(d)}")

    def kill(self) -> bool:
        """Kill the running attempt's process group on the host (best effort)."""
        self.cancelled.set()
        d = self.current
        if d is None or self.conn is None:
            return False
        try:
            return bool(self.conn.check(_script(_REAP, d), timeout_s=15))
        except SSHError:
            return False

    def ping(self) -> bool:
        return True

    def probe(self) -> bool:
        """Can the host be reached (and what an earlier attempt left there reaped)?"""
        try:
            self._connect(time.monotonic() + PROBE_TIMEOUT_S)
            return True
        except SSHError:
            return False


class SSHExecutor(RayExecutor):
    lost_error = "slot actor lost"

    def __init__(self, inventory: Inventory, names: list[str] | None = None, *, store=None,
                 liveness_s: float | None = None, quarantine_s: float | None = None,
                 log=print, object_store_mb: int = 128):
        super().__init__()
        s = settings()
        liveness_s = s.ssh_liveness_s if liveness_s is None else liveness_s
        quarantine_s = s.ssh_quarantine_s if quarantine_s is None else quarantine_s
        self.store, self.log, self.quarantine_s = store, log, quarantine_s
        self.slots: list[Slot] = []
        hosts = inventory.select(names)
        plan: list[tuple[Host, Slot]] = []
        skipped: list[str] = []
        for host in hosts:
            try:
                with contextlib.closing(inventory.connect(host, timeout_s=10)) as conn:
                    info = probe_host(conn, host)
                    killed = reap(conn, host)
            except SSHError as e:
                skipped.append(str(e))
                log(f"{host.name}: skipped: {e}")
                self._record(host.name, "unreachable", {"error": str(e)})
                continue
            if info.get("provisioned") != "yes":
                skipped.append(f"{host.name}: not provisioned")
                log(f"{host.name}: skipped: not provisioned; run `orchestrate hosts provision "
                    f"{host.name}`")
                self._record(host.name, "unprovisioned", info)
                continue
            if killed:
                log(f"{host.name}: killed {len(killed)} job(s) left running by a stopped "
                    f"coordinator")
            self._record(host.name, "ok", info)
            gpus = slots_of(host, info)
            for g in gpus or ["cpu"]:
                slot = Slot(f"{host.name}/{'gpu' + g if gpus else 'cpu'}", host.name,
                            g, g if gpus else "")
                plan.append((host, slot))
        if not plan:
            raise ExecutorUnavailable("no host can run jobs (" + "; ".join(skipped) + ")")
        ray.init(num_cpus=1, num_gpus=0, object_store_memory=object_store_mb * 1024 * 1024,
                 include_dashboard=False, log_to_driver=False, configure_logging=False)
        self.actors: dict[str, Any] = {}
        for host, slot in plan:
            self.slots.append(slot)
            self.actors[slot.name] = SlotWorker.remote(host, slot, str(inventory.known_hosts),
                                                       liveness_s)
        ray.get([a.ping.remote() for a in self.actors.values()])
        self._lost_in_row: dict[str, int] = {}
        self._suspect: dict[str, float] = {}  # host -> when it may be probed
        self._probes: dict[str, Any] = {}  # host -> probe in flight

    def _record(self, host: str, state: str, info: dict | None) -> None:
        if self.store is not None:
            self.store.record_check(host, state, info)

    def ready(self, slot: Slot) -> bool:
        host = slot.host
        if host not in self._suspect:
            return True
        if time.monotonic() < self._suspect[host]:
            return False
        probe = self._probes.get(host)
        if probe is None:
            self._probes[host] = self.actors[slot.name].probe.remote()
            return False
        if not ray.wait([probe], timeout=0)[0]:
            return False
        del self._probes[host]
        try:
            ok = ray.get(probe)
        except ray.exceptions.RayError:
            ok = False
        if ok:
            del self._suspect[host]
            self._record(host, "ok", None)
            return True
        self._quarantine(host, "it does not answer")
        return False

    def _quarantine(self, host: str, why: str) -> None:
        self._suspect[host] = time.monotonic() + self.quarantine_s
        self.log(f"{host}: quarantined for {self.quarantine_s:g} s: {why}")
        self._record(host, "quarantined", None)

    def submit(self, slot: Slot, jobs: list[str], timeout_s: float) -> Any:
        run = self.actors[slot.name].run.options(num_returns="streaming")
        return self._started(slot, jobs, run.remote(jobs, timeout_s, self.nice))

    def _finished(self, slot: Slot, outs: list[Outcome]) -> None:
        host = slot.host
        # Lost to the host: the first job's outcome says (the jobs after it may be lost
        # for not being reached, the host's fault or not).
        if outs[0].outcome != "lost":
            self._lost_in_row[host] = 0
            return
        n = self._lost_in_row[host] = self._lost_in_row.get(host, 0) + 1
        if n >= QUARANTINE_AFTER:
            self._lost_in_row[host] = 0
            self._quarantine(host, f"{n} attempts lost in a row")
        elif host not in self._suspect:
            self._suspect[host] = time.monotonic()  # probe before the next job

    def cancel(self, handle: Any) -> None:
        task = self._running.pop(handle, None)
        if task is not None:
            with contextlib.suppress(ray.exceptions.RayError):
                ray.get(self.actors[task.slot.name].kill.remote(), timeout=20)

