"""End-to-end: the ray executor on a real Ray cluster. The head runs here; two worker
hosts live in network namespaces, reached over real sshd and joined with
`orchestrate hosts join`; one is killed mid-job and its job runs again on the other."""

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from testbed.netns import can_make_namespaces, namespaces
from testbed.sshd import PYTHON, Sshd, have_sshd, inventory, keygen
from tests.e2e.conftest import kill_group, orchestrate, query, start, sweep_file, wait_for
from tests.e2e.test_ssh import assert_each_job_succeeded_once, ssh_env

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not (have_sshd() and can_make_namespaces()),
                                 reason="needs sshd, root and nft")]
# Node death shows in seconds, not the default half minute.
FAST_HEALTH = dict(RAY_health_check_period_ms="1000", RAY_health_check_timeout_ms="1000",
                   RAY_health_check_failure_threshold="3",
                   RAY_health_check_initial_delay_ms="1000", RAY_AUTH_MODE="disabled",
                   RAY_USAGE_STATS_ENABLED="0")


def processes_under(temp_dir: str) -> list[int]:
    """Pids whose command line names temp_dir: the Ray processes this test started."""
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            with contextlib.suppress(OSError):
                if temp_dir.encode() in (p / "cmdline").read_bytes():
                    pids.append(int(p.name))
    return pids


@contextlib.contextmanager
def ray_head(address: str, port: int, temp_dir: str):
    cmd = [PYTHON, "-m", "ray.scripts.scripts", "start", "--head", "--node-ip-address",
           address, "--port", str(port), "--num-cpus", "0", "--temp-dir", temp_dir,
           "--include-dashboard", "false", "--object-store-memory", "80000000",
           "--disable-usage-stats"]
    try:
        done = subprocess.run(cmd, env=dict(os.environ, **FAST_HEALTH), capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        yield f"{address}:{port}"
    finally:
        for _ in range(3):
            for pid in processes_under(temp_dir):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.timeout(420)
def test_ray_cluster_survives_a_dead_node(tmp_path, cache_dir):
    key = keygen(tmp_path / "id_ed25519")
    db = f"sqlite:///{tmp_path / 'r.db'}"
    tag = os.getpid() % 10000
    with namespaces(2, subnet_base=20) as nss:
        servers = {f"r{i}": Sshd(tmp_path / f"r{i}", ns.address, 2300 + i,
                                 key.with_suffix(".pub"), ns.name).start()
                   for i, ns in enumerate(nss)}
        try:
            inv = inventory(tmp_path / "hosts.yaml", key, servers,
                            setup="export RAY_AUTH_MODE=disabled")
            env = dict(ssh_env(cache_dir, db, inv), **FAST_HEALTH)
            prov = orchestrate(env, "hosts", "provision", "--accept-new", timeout=240)
            assert prov.returncode == 0, prov.stdout + prov.stderr
            with ray_head(nss[0].gateway, 6390 + tag % 100, f"/tmp/bsr{tag}h") as head:
                for i in range(2):
                    joined = orchestrate(env, "hosts", "join", f"r{i}", "--head", head,
                                         "--ray-args", f"--num-cpus 1 --object-store-memory "
                                         f"80000000 --temp-dir /tmp/bsr{tag}w{i}", timeout=180)
                    assert joined.returncode == 0, joined.stdout + joined.stderr
                    assert f"slot:r{i}:cpu" in joined.stdout
                try:
                    spec = sweep_file(tmp_path, "ray2", repeats=3, matrix="max_num_seqs: [2]")
                    proc = start(env, "sweep", str(spec), "--executor", "ray", "--address",
                                 head)
                    try:
                        running_r0 = ("SELECT count(*) FROM attempts WHERE outcome = "
                                      "'running' AND host = 'r0'")
                        wait_for(lambda: query(db, running_r0)[0][0] == 1, 120, "r0 job")
                        time.sleep(3)
                        killed_at = time.monotonic()
                        nss[0].kill_all()  # the node dies: raylet, workers, the job
                        output, _ = proc.communicate(timeout=240)
                        after_death = time.monotonic() - killed_at
                    finally:
                        kill_group(proc)
                    assert proc.returncode == 0, output
                finally:
                    for i in range(2):
                        for pid in processes_under(f"/tmp/bsr{tag}w{i}"):
                            with contextlib.suppress(ProcessLookupError):
                                os.kill(pid, signal.SIGKILL)
                        shutil.rmtree(f"/tmp/bsr{tag}w{i}", ignore_errors=True)
        finally:
            for s in servers.values():
                s.stop()
    assert_each_job_succeeded_once(db, 3)
    rows = query(db, "SELECT host, outcome, error FROM attempts ORDER BY id")
    # One attempt lost with the node; the dead node got no further job.
    assert [(h, o) for h, o, _ in rows if o != "succeeded"] == [("r0", "lost")], rows
    assert {h for h, o, _ in rows if o == "succeeded"} <= {"r0", "r1"}
    # Every loss was seen by the executor, none waited out the sweep's own deadline.
    assert not [e for _, o, e in rows if o == "lost" and "did not answer" in (e or "")], rows
    assert after_death < 90, f"{after_death:.0f} s from the node's death to the sweep's end"
    print(f"node death to sweep end: {after_death:.1f} s")
