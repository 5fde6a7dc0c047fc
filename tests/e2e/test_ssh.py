"""End-to-end: the ssh executor against real sshd servers, in network namespaces with their
own addresses (one host crashes mid-job, one is partitioned by dropping packets) and on
loopback (the coordinator is SIGKILLed and restarted)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from testbed.netns import can_make_namespaces, namespaces
from testbed.sshd import Sshd, free_port, have_sshd, inventory, keygen
from tests.e2e.conftest import (
    ROOT,
    kill_group,
    orchestrate,
    orchestrate_env,
    query,
    start,
    sweep_file,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not have_sshd(), reason="needs sshd")]


@pytest.fixture(scope="module")
def client_key(tmp_path_factory) -> Path:
    return keygen(tmp_path_factory.mktemp("client") / "id_ed25519")


def ssh_env(cache_dir: Path, db: str, inv: Path, **extra: str) -> dict:
    return dict(orchestrate_env(cache_dir, db), BENCHSWEEP_HOSTS=str(inv), **extra)


def attempts(db: str) -> list[tuple]:
    return query(db, "SELECT j.ordinal, a.number, a.host, a.outcome, a.error FROM attempts a "
                     "JOIN jobs j ON j.id = a.job_id ORDER BY j.ordinal, a.number")


def assert_each_job_succeeded_once(db: str, jobs: int) -> None:
    assert query(db, "SELECT state, count(*) FROM jobs GROUP BY state") == [("succeeded", jobs)]
    assert query(db, "SELECT count(*) FROM attempts WHERE outcome = 'running'") == [(0,)]
    per_job = query(db, "SELECT job_id, count(*) FROM attempts WHERE outcome = 'succeeded' "
                        "GROUP BY job_id")
    assert len(per_job) == jobs and all(n == 1 for _, n in per_job)
    # The result names the host of the attempt that produced it.
    assert query(db, "SELECT count(*) FROM results r JOIN attempts a ON a.id = r.attempt_id "
                     "WHERE a.outcome = 'succeeded' AND a.host = r.host") == [(jobs,)]


@pytest.mark.skipif(not can_make_namespaces(), reason="needs root and nft")
@pytest.mark.timeout(480)
def test_three_hosts_survive_a_crash_and_a_partition(tmp_path, cache_dir, client_key):
    db = f"sqlite:///{tmp_path / 's.db'}"
    with namespaces(3) as nss:
        servers = {f"h{i}": Sshd(tmp_path / f"h{i}", ns.address, 2200 + i,
                                 client_key.with_suffix(".pub"), ns.name).start()
                   for i, ns in enumerate(nss)}
        try:
            inv = inventory(tmp_path / "hosts.yaml", client_key, servers)
            env = ssh_env(cache_dir, db, inv, BENCHSWEEP_SSH_LIVENESS_S="8",
                          BENCHSWEEP_SSH_QUARANTINE_S="12")
            prov = orchestrate(env, "hosts", "provision", "--accept-new", timeout=240)
            assert prov.returncode == 0, prov.stdout + prov.stderr
            assert prov.stdout.count("provisioned (") == 3

            spec = sweep_file(tmp_path, "ssh3", repeats=4, matrix="max_num_seqs: [2, 4]")
            proc = start(env, "sweep", str(spec), "--executor", "ssh")
            try:
                running_on = ("SELECT count(*) FROM attempts WHERE outcome = 'running' "
                              "AND host = '{}'")
                # h0 crashes mid-job: sshd and every process of the box die.
                wait_for(lambda: query(db, running_on.format("h0"))[0][0] == 1, 90, "h0 job")
                time.sleep(3)
                nss[0].kill_all()
                # h1 drops every packet mid-job, then heals after its attempt is lost.
                wait_for(lambda: query(db, running_on.format("h1"))[0][0] == 1, 60, "h1 job")
                time.sleep(2)
                nss[1].partition()
                lost_on_h1 = ("SELECT count(*) FROM attempts WHERE outcome = 'lost' "
                              "AND host = 'h1'")
                wait_for(lambda: query(db, lost_on_h1)[0][0] >= 1, 60, "h1 lost")
                nss[1].heal()
                output, _ = proc.communicate(timeout=300)
            finally:
                kill_group(proc)
            assert proc.returncode == 0, output
        finally:
            for s in servers.values():
                s.stop()

        assert_each_job_succeeded_once(db, 8)
        rows = attempts(db)
        lost_hosts = {h for _, _, h, o, _ in rows if o == "lost"}
        assert lost_hosts >= {"h0", "h1"}, rows
        assert {h for _, _, h, o, _ in rows if o == "succeeded"} <= {"h0", "h1", "h2"}
        # h1 came back after its quarantine, reaped what the partition left and ran jobs.
        h1 = [(o, n) for _, n, h, o, _ in rows if h == "h1"]
        assert ("succeeded" in [o for o, _ in h1[h1.index(next(x for x in h1
                                                                 if x[0] == "lost")):]]), rows
        assert query(db, "SELECT state FROM hosts WHERE name = 'h0'") == [("quarantined",)]
        # Nothing of any job is left running in any namespace.
        for ns in nss:
            assert not [p for p in ns.pids() if "engine.bench" in _cmdline(p)
                        or "executors.process" in _cmdline(p)]
        assert not list((servers["h1"].dir / "home/benchsweep/attempts").iterdir())


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


@pytest.fixture(scope="module")
def box(tmp_path_factory, cache_dir, client_key):
    """One provisioned host on loopback, shared by the tests below."""
    tmp = tmp_path_factory.mktemp("box")
    server = Sshd(tmp / "box", "127.0.0.1", free_port(), client_key.with_suffix(".pub"))
    server.start()
    try:
        inv = inventory(tmp / "hosts.yaml", client_key, {"box": server})
        env = ssh_env(cache_dir, f"sqlite:///{tmp / 'p.db'}", inv)
        prov = orchestrate(env, "hosts", "provision", "--accept-new", timeout=200)
        assert prov.returncode == 0, prov.stdout + prov.stderr
        yield server, inv
    finally:
        server.stop()


def start_and_kill_coordinator(env: dict, spec: Path, attempts_dir: Path) -> list[int]:
    """Start a sweep, SIGKILL its coordinator once a remote job runs; the runners' pids."""
    proc = start(env, "sweep", str(spec))
    try:
        wait_for(lambda: any((d / "pid").exists() for d in attempts_dir.iterdir()), 90,
                 "a remote job")
        os.killpg(proc.pid, signal.SIGKILL)  # the coordinator dies; the job does not
        proc.wait(10)
    finally:
        kill_group(proc)
    return [int((d / "pid").read_text()) for d in attempts_dir.iterdir()]


@pytest.mark.timeout(300)
def test_restarted_coordinator_kills_what_the_dead_one_left(tmp_path, cache_dir, box):
    server, inv = box
    db = f"sqlite:///{tmp_path / 'r.db'}"
    env = ssh_env(cache_dir, db, inv)
    spec = sweep_file(tmp_path, "restart", matrix="max_num_seqs: [2, 4]")
    spec.write_text(spec.read_text() + textwrap.dedent(f"""\
        executor: {{kind: ssh, hosts: {inv}}}
        """))
    attempts_dir = server.dir / "home/benchsweep/attempts"
    left = start_and_kill_coordinator(env, spec, attempts_dir)
    assert left and all(_alive(p) for p in left)
    # The new coordinator at nice 3: its jobs run at 3 on the host too, where sshd's
    # session would have given them its own priority.
    again = subprocess.run(["nice", "-n", "3", sys.executable, "-m", "orchestrator.cli",
                            "sweep", str(spec)], env=env, cwd=ROOT, capture_output=True,
                           text=True, timeout=200)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "killed 1 job(s) left running by a stopped coordinator" in again.stderr
    assert not any(_alive(p) for p in left)
    assert_each_job_succeeded_once(db, 2)
    for (rec,) in query(db, "SELECT record FROM results"):
        cond = (json.loads(rec) if isinstance(rec, str) else rec)["conditions"]
        assert (cond["nice"], cond["nice_asked"]) == (3, 3)
    assert ("lost",) in query(db, "SELECT outcome FROM attempts")
    assert not list(attempts_dir.iterdir())
    # Each job's output came back over SSH as it ran, into its attempt's log.
    logs: dict[int, str] = {}
    for attempt, text in query(db, "SELECT c.attempt_id, c.text FROM attempt_log_chunks c JOIN "
                                   "attempts a ON a.id = c.attempt_id WHERE a.outcome = "
                                   "'succeeded' ORDER BY c.id"):
        logs[attempt] = logs.get(attempt, "") + text
    assert len(logs) == 2
    for text in logs.values():
        assert "[benchsweep] job 1 of 1: nano" in text and '"output_tok_s"' in text


@pytest.mark.timeout(200)
def test_watchdog_kills_a_job_nobody_polls(tmp_path, cache_dir, box):
    server, inv = box
    env = ssh_env(cache_dir, f"sqlite:///{tmp_path / 'w.db'}", inv,
                  BENCHSWEEP_SSH_WATCHDOG_S="3")
    spec = sweep_file(tmp_path, "watchdog", matrix="max_num_seqs: [2]")
    # A job of a minute or more, so that it cannot end on its own before the watchdog.
    spec.write_text(spec.read_text().replace("num_seqs: 4,", "num_seqs: 64,")
                    .replace("output_len: [2, 6]", "output_len: [400, 400]"))
    attempts_dir = server.dir / "home/benchsweep/attempts"
    for d in attempts_dir.glob("*"):  # what an earlier test left is not this test's
        shutil.rmtree(d)
    spec.write_text(spec.read_text() + f"executor: {{kind: ssh, hosts: {inv}}}\n")
    left = start_and_kill_coordinator(env, spec, attempts_dir)
    # No coordinator polls now; the watchdog beside the runner kills it within seconds,
    # long before the job could finish. (Wait for its line first: on a loaded machine the
    # runner may not yet be the python process _alive looks for.)
    (d,) = attempts_dir.iterdir()
    wait_for(lambda: "watchdog: no poll for 3 s" in (d / "runner.log").read_text(), 30,
             "the watchdog")
    wait_for(lambda: not any(_alive(p) for p in left), 10, "the job's end")
    assert not (d / "outcome.json").exists()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "executors.process" in _cmdline(pid)


def test_unknown_inventory_is_one_line(tmp_path, cache_dir):
    db = f"sqlite:///{tmp_path / 'u.db'}"
    spec = sweep_file(tmp_path, "nohosts")
    run = orchestrate(ssh_env(cache_dir, db, tmp_path / "missing.yaml"), "sweep", str(spec),
                      "--executor", "ssh", timeout=60)
    assert run.returncode == 2 and "no such inventory file" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_unprovisioned_host_gets_no_jobs(tmp_path, cache_dir, client_key):
    db = f"sqlite:///{tmp_path / 'p.db'}"
    server = Sshd(tmp_path / "box", "127.0.0.1", free_port(), client_key.with_suffix(".pub"))
    server.start()
    try:
        inv = inventory(tmp_path / "hosts.yaml", client_key, {"box": server})
        env = ssh_env(cache_dir, db, inv)
        assert orchestrate(env, "hosts", "check", "--accept-new").returncode == 0
        run = orchestrate(env, "sweep", str(sweep_file(tmp_path, "unprov")), "--executor",
                          "ssh", timeout=60)
    finally:
        server.stop()
    assert run.returncode == 1, run.stdout + run.stderr
    assert "no host can run jobs (box: not provisioned)" in run.stderr
    assert "orchestrate hosts provision box" in run.stderr
    assert query(db, "SELECT state FROM hosts") == [("unprovisioned",)]
    assert query(db, "SELECT count(*) FROM attempts") == [(0,)]


@pytest.mark.parametrize("args, message", [
    (("--executor", "slurm"), "--executor must be local, ssh or ray, not 'slurm'"),
    (("--executor", "ray"), "the ray executor needs --address"),
    (("--executor", "ray", "--address", "127.0.0.1:1"),
     "ray cluster 127.0.0.1:1: cannot reach 127.0.0.1:1: Connection refused"),
])
def test_bad_executor_flags_are_one_line(tmp_path, cache_dir, args, message):
    db = f"sqlite:///{tmp_path / 'f.db'}"
    run = orchestrate(orchestrate_env(cache_dir, db), "sweep",
                      str(sweep_file(tmp_path, "flags")), *args, timeout=120)
    assert run.returncode in (1, 2) and message in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    written = tmp_path / "f.db"
    assert not written.exists() or query(db, "SELECT count(*) FROM attempts") == [(0,)]
