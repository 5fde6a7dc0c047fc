"""A throwaway PostgreSQL server for the test session: Debian's postgresql binaries, a data
directory in a temp dir, a free port on 127.0.0.1. Runs as the `postgres` user when the
tests run as root (PostgreSQL refuses root)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name) or ""]
    if not found[-1]:
        raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql; "
                           "`make test` does this)")
    return found[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres_server():
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    tmp = tempfile.mkdtemp(prefix="benchsweep-pg-")
    data = os.path.join(tmp, "data")
    if as_user:
        shutil.chown(tmp, "postgres")
    port = _free_port()
    subprocess.run([*as_user, _bin("initdb"), "-D", data, "-U", "bench", "--auth=trust",
                    "-E", "UTF8"], check=True, capture_output=True)
    log = os.path.join(tmp, "log")
    subprocess.run([*as_user, _bin("pg_ctl"), "-D", data, "-l", log, "-w", "-o",
                    f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                   check=True, capture_output=True)
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield f"postgresql+psycopg://bench@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_user, _bin("pg_ctl"), "-D", data, "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
