"""A real OpenSSH server standing in for a remote host: its own host key, config, authorized
key and home directory, on a non-standard port, optionally inside a network namespace; and
an inventory file naming such servers."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
ROOT = Path(__file__).resolve().parents[1]
# The interpreter the hosts run jobs with: the project's, which has the engine's requirements.
PYTHON = str(ROOT / ".venv/bin/python") if (ROOT / ".venv").exists() else sys.executable


def have_sshd() -> bool:
    return os.path.exists(SSHD) and shutil.which("ssh-keygen") is not None


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Sshd:
    dir: Path
    address: str
    port: int
    client_pub: Path
    netns: str | None = None
    proc: subprocess.Popen | None = None

    def start(self, *, new_host_key: bool = False) -> Sshd:
        self.dir.mkdir(parents=True, exist_ok=True)
        key = self.dir / "host_ed25519"
        if new_host_key or not key.exists():
            for p in (key, key.with_suffix(".pub")):
                p.unlink(missing_ok=True)
            keygen(key)
        shutil.copy(self.client_pub, self.dir / "authorized_keys")
        # Its own home: bash reads no ~/.bashrc of this machine's root (whose pyenv
        # rehash lock a killed "host" could leave behind), caches stay apart.
        (self.dir / "home").mkdir(exist_ok=True)
        cfg = self.dir / "sshd_config"
        cfg.write_text(textwrap.dedent(f"""\
            Port {self.port}
            ListenAddress {self.address}
            HostKey {key}
            PidFile {self.dir}/sshd.pid
            AuthorizedKeysFile {self.dir}/authorized_keys
            StrictModes no
            PermitRootLogin prohibit-password
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            UsePAM no
            Subsystem sftp internal-sftp
            LogLevel ERROR
            MaxStartups 50
            SetEnv HOME={self.dir}/home
            """))
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
        cmd = [SSHD, "-D", "-e", "-f", str(cfg)]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                     stderr=open(self.dir / "sshd.log", "ab"))  # noqa: SIM115
        self._wait_listening()
        return self

    def _wait_listening(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.dir / 'sshd.log').read_text()}")
            probe = ["bash", "-c", f"exec 3<>/dev/tcp/{self.address}/{self.port}"]
            if self.netns:
                probe = ["ip", "netns", "exec", self.netns, *probe]
            if subprocess.run(probe, capture_output=True).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"sshd on {self.address}:{self.port} did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def host_key_pub(self) -> str:
        return (self.dir / "host_ed25519.pub").read_text().split()[1]


@contextlib.contextmanager
def running_sshd(dir: Path, client_pub: Path, *, address: str = "127.0.0.1",
                 port: int | None = None, netns: str | None = None):
    server = Sshd(dir, address, port or free_port(), client_pub, netns).start()
    try:
        yield server
    finally:
        server.stop()


def inventory(path: Path, key: Path, servers: dict[str, Sshd], setup: str = "") -> Path:
    """Each host has its own home (sshd sets it), so its own workdir and model cache; the
    interpreter is one that has the engine's requirements, as a conda python on a rented
    box would."""
    import yaml

    hosts = {name: dict(address=s.address, port=s.port, user="root", key_file=str(key),
                        python=PYTHON, venv=False, pip_args="--no-index",
                        **({"setup": setup} if setup else {}))
             for name, s in servers.items()}
    path.write_text(yaml.safe_dump({"hosts": hosts}))
    return path
