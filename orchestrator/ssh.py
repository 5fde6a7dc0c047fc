"""One SSH connection to one host (paramiko): connect with retries and backoff, verify the
host key against the project's known_hosts file, run a command with a deadline, move small
files over SFTP. Keys come from a key file or ssh-agent; no password is ever taken."""

from __future__ import annotations

import shlex
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko

from db.redact import mask
from engine.errors import UserError


class SSHError(UserError, RuntimeError):
    """A host could not be reached, refused us, or did not answer in time (one line)."""


class HostKeyError(SSHError):
    """The host's key is unknown (and --accept-new was not given) or has changed."""


@dataclass(frozen=True)
class Endpoint:
    name: str
    address: str
    port: int = 22
    user: str = "root"
    key_file: str | None = None


class _Policy(paramiko.MissingHostKeyPolicy):
    """Unknown key: refuse, unless accept_new (trust on first use, then saved)."""

    def __init__(self, accept_new: bool, known_hosts: Path):
        self.accept_new, self.known_hosts = accept_new, known_hosts

    def missing_host_key(self, client, hostname, key) -> None:
        if not self.accept_new:
            raise HostKeyError(
                f"{hostname} is not in {self.known_hosts} (its {key.get_name()} key "
                f"{_fingerprint(key)}); check it and run `orchestrate hosts check --accept-new`")
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        client.save_host_keys(str(self.known_hosts))


def _fingerprint(key: paramiko.PKey) -> str:
    return "SHA256:" + key.fingerprint.split(":", 1)[-1] if hasattr(key, "fingerprint") else ""


class Connection:
    """A live SSH session. `run` and the SFTP helpers raise SSHError on any transport
    trouble, so callers have one exception to handle."""

    def __init__(self, endpoint: Endpoint, known_hosts: Path, *, accept_new: bool = False,
                 timeout_s: float = 10.0, attempts: int = 3, backoff_s: float = 1.0):
        self.endpoint, self.known_hosts, self.timeout_s = endpoint, known_hosts, timeout_s
        self.client = self._connect(accept_new, attempts, backoff_s)
        self._sftp: paramiko.SFTPClient | None = None

    def _connect(self, accept_new: bool, attempts: int, backoff_s: float) -> paramiko.SSHClient:
        e = self.endpoint
        last: Exception | None = None
        for i in range(attempts):
            client = paramiko.SSHClient()
            if self.known_hosts.exists():
                client.load_host_keys(str(self.known_hosts))
            client.set_missing_host_key_policy(_Policy(accept_new, self.known_hosts))
            try:
                client.connect(
                    e.address, port=e.port, username=e.user,
                    key_filename=str(Path(e.key_file).expanduser()) if e.key_file else None,
                    timeout=self.timeout_s, banner_timeout=self.timeout_s,
                    auth_timeout=self.timeout_s, allow_agent=True, look_for_keys=False)
                # Dead peers (a partition) show as a failed keepalive, not a silent hang.
                client.get_transport().set_keepalive(5)
                return client
            except HostKeyError:
                client.close()
                raise
            except paramiko.BadHostKeyException as ex:
                client.close()
                raise HostKeyError(
                    f"{e.name}: the host key of {e.address}:{e.port} has CHANGED "
                    f"(now {_fingerprint(ex.key)}); if the box was reinstalled, remove its "
                    f"line from {self.known_hosts} and check again with --accept-new"
                ) from None
            except paramiko.AuthenticationException as ex:
                client.close()
                raise SSHError(f"{e.name}: {e.user}@{e.address}:{e.port} refused our key "
                               f"({ex})") from None
            except (OSError, paramiko.SSHException, EOFError) as ex:
                client.close()
                last = ex
                if i + 1 < attempts:
                    time.sleep(backoff_s * 2**i)
        raise SSHError(f"{e.name}: cannot connect to {e.address}:{e.port}: "
                       f"{_one_line(last)}")

    def run(self, command: str, *, timeout_s: float | None = None,
            stdin: str | None = None) -> tuple[int, str]:
        """Run `command` under bash; return (exit code, stdout+stderr)."""
        timeout = timeout_s or self.timeout_s
        deadline = time.monotonic() + timeout
        try:
            chan = self.client.get_transport().open_session(timeout=self.timeout_s)
            chan.settimeout(min(timeout, 5.0))
            chan.set_combine_stderr(True)
            chan.exec_command(f"bash -c {shlex.quote(command)}")
            if stdin is not None:
                chan.sendall(stdin.encode())
            chan.shutdown_write()
            chunks = []
            while True:
                try:
                    data = chan.recv(65536)
                except TimeoutError:
                    data = None
                if data:
                    chunks.append(data)
                elif data == b"" and chan.exit_status_ready():
                    break
                elif data == b"":
                    time.sleep(0.01)
                if time.monotonic() > deadline:
                    chan.close()
                    raise SSHError(f"{self.endpoint.name}: no answer within {timeout:g} s")
            code = chan.recv_exit_status()
            chan.close()
            return code, b"".join(chunks).decode(errors="replace")
        except SSHError:
            raise
        except (OSError, paramiko.SSHException, EOFError, AttributeError) as ex:
            raise SSHError(f"{self.endpoint.name}: {_one_line(ex)}") from None

    def check(self, command: str, *, timeout_s: float | None = None) -> str:
        code, out = self.run(command, timeout_s=timeout_s)
        if code:
            last = [ln for ln in out.splitlines() if ln.strip()]
            shown = mask(" ".join(command.split()))[:60]  # a setup line may hold a password
            raise SSHError(f"{self.endpoint.name}: `{shown}` exited {code}: "
                           f"{last[-1] if last else 'no output'}")
        return out

    @property
    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            try:
                self._sftp = self.client.open_sftp()
                self._sftp.get_channel().settimeout(self.timeout_s)
            except (OSError, paramiko.SSHException, EOFError) as ex:
                raise SSHError(f"{self.endpoint.name}: sftp: {_one_line(ex)}") from None
        return self._sftp

    def put_bytes(self, path: str, data: bytes) -> None:
        try:
            with self.sftp.open(path, "wb") as f:
                f.write(data)
        except (OSError, paramiko.SSHException, EOFError) as ex:
            raise SSHError(f"{self.endpoint.name}: cannot write {path}: {_one_line(ex)}") from None

    def get_text(self, path: str) -> str | None:
        """The file's text, or None when it does not exist."""
        try:
            with self.sftp.open(path, "r") as f:
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return None
        except (OSError, paramiko.SSHException, EOFError) as ex:
            raise SSHError(f"{self.endpoint.name}: cannot read {path}: {_one_line(ex)}") from None

    @property
    def home(self) -> str:
        if not hasattr(self, "_home"):
            self._home = self.check('printf %s "$HOME"').strip()
        return self._home

    def abspath(self, path: str) -> str:
        """`~` expanded the way the remote shell would, for SFTP."""
        return self.home + path[1:] if path == "~" or path.startswith("~/") else path

    def alive(self) -> bool:
        t = self.client.get_transport()
        return bool(t and t.is_active())

    def close(self) -> None:
        try:
            if self._sftp:
                self._sftp.close()
        except (OSError, EOFError):
            pass
        self.client.close()


def _one_line(e: BaseException | None) -> str:
    if e is None:
        return "unknown error"
    if isinstance(e, socket.timeout | TimeoutError):
        return "timed out"
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]
