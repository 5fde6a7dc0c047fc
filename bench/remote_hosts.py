"""Remote hosts over SSH: (a) provisioning time per host, (b) jobs/s of one sweep across
N hosts against one host, (c) time from a host's death mid-job to its job running again
on another host. Hosts are network namespaces on this machine, each with its own sshd,
address and home; the job is a tiny model on the CPU. Needs root, sshd and nft.

    sudo python bench/remote_hosts.py --hosts 3 --jobs 6 --liveness 10
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from db.store import Store  # noqa: E402
from orchestrator.hosts import Inventory, provision  # noqa: E402
from orchestrator.run import run_sweep  # noqa: E402
from orchestrator.spec import parse  # noqa: E402
from testbed.netns import namespaces  # noqa: E402
from testbed.sshd import Sshd, inventory, keygen  # noqa: E402

SWEEP = textwrap.dedent("""\
    name: {name}
    model: {{arch: tiny}}
    workload: {{num_seqs: 2, input_len: [4, 8], output_len: [2, 4]}}
    variants: {{hf: {{kind: hf}}}}
    matrix: {{max_num_seqs: [2]}}
    repeats: {jobs}
    timeout_s: 300
    """)


def sweep(store: Store, inv: Inventory, names: list[str], name: str, jobs: int,
          on_start=None) -> tuple[float, object]:
    from orchestrator.executors.ssh import SSHExecutor

    ex = SSHExecutor(inv, names, store=store, log=lambda m: print("  " + m))
    if on_start:
        on_start()
    t = time.monotonic()
    summary = run_sweep(parse(SWEEP.format(name=name, jobs=jobs), name), store, lambda: ex)
    return time.monotonic() - t, summary  # run_sweep shut the executor down


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--hosts", type=int, default=3)
    p.add_argument("--jobs", type=int, default=6)
    p.add_argument("--liveness", type=float, default=10.0)
    a = p.parse_args()
    os.environ["BENCHSWEEP_SSH_LIVENESS_S"] = str(a.liveness)  # engine.settings reads it
    with tempfile.TemporaryDirectory(prefix="bench-hosts-") as tmp, namespaces(
            a.hosts, subnet_base=40) as nss:
        tmp = Path(tmp)
        key = keygen(tmp / "id_ed25519")
        servers = {f"h{i}": Sshd(tmp / f"h{i}", ns.address, 2400 + i,
                                 key.with_suffix(".pub"), ns.name).start()
                   for i, ns in enumerate(nss)}
        try:
            inv = Inventory.load(inventory(tmp / "hosts.yaml", key, servers))
            store = Store(f"sqlite:///{tmp / 'b.db'}")
            for h in inv.hosts.values():
                store.save_host(h.name, address=h.config.address, port=h.config.port,
                                user=h.config.user, key_file=h.config.key_file, setup=None)

            print("(a) provisioning, per host")
            for h in inv.hosts.values():
                t = time.monotonic()
                with contextlib.closing(inv.connect(h, accept_new=True)) as conn:
                    done = provision(conn, h, log=lambda m: None)
                steps = ", ".join(f"{k} {v:.1f}" for k, v in done.seconds.items())
                print(f"  {h.name}: {time.monotonic() - t:.1f} s ({steps})")

            print(f"(b) {a.jobs} jobs")
            one, _ = sweep(store, inv, ["h0"], "one", a.jobs)
            print(f"  1 host:  {one:.1f} s, {a.jobs / one:.3f} jobs/s")
            alln, _ = sweep(store, inv, None, "all", a.jobs)
            print(f"  {a.hosts} hosts: {alln:.1f} s, {a.jobs / alln:.3f} jobs/s "
                  f"({one / alln:.2f}x)")

            print(f"(c) host death mid-job -> job running again (liveness {a.liveness:g} s)")
            db = store.url
            result: dict = {}

            def killer() -> None:
                from sqlalchemy import create_engine, text

                eng = create_engine(db)
                q = ("SELECT a.job_id FROM attempts a JOIN jobs j ON j.id = a.job_id "
                     "JOIN sweeps s ON s.id = j.sweep_id WHERE s.name = 'death' AND "
                     "a.host = 'h0' AND a.outcome = 'running'")
                with eng.connect() as c:
                    while not (row := c.execute(text(q)).first()):
                        time.sleep(0.1)
                time.sleep(2)
                nss[0].kill_all()
                killed = time.monotonic()
                lost = f"SELECT count(*) FROM attempts WHERE job_id = {row[0]} AND " \
                       "outcome = 'lost'"
                again = f"SELECT count(*) FROM attempts WHERE job_id = {row[0]}"
                with eng.connect() as c:
                    for key, q in (("lost_s", lost), ("rescheduled_s", again)):
                        while c.execute(text(q)).scalar() < (1 if key == "lost_s" else 2):
                            time.sleep(0.1)
                            c.rollback()
                        result[key] = time.monotonic() - killed
                eng.dispose()

            th = threading.Thread(target=killer, daemon=True)
            th.start()
            took, summary = sweep(store, inv, None, "death", a.jobs)
            th.join(5)
            nan = float("nan")
            print(f"  attempt lost after {result.get('lost_s', nan):.1f} s, job running again "
                  f"after {result.get('rescheduled_s', nan):.1f} s (a slot had to free up); "
                  f"sweep {took:.1f} s, outcomes {summary.outcomes}, failed jobs "
                  f"{summary.failed_jobs}")
        finally:
            for s in servers.values():
                s.stop()


if __name__ == "__main__":
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    main()
