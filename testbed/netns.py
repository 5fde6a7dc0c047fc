"""Network namespaces as stand-in hosts: each has a veth to this machine on its own /24 of
10.213.0.0/16, and can be cut off by dropping every packet inside it (nft). An unreachable
route for the whole test range goes in first, so no packet of it ever leaves the machine."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass

TEST_RANGE = "10.213.0.0/16"


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=30)


def can_make_namespaces() -> bool:
    if os.geteuid() != 0 or not os.path.exists("/usr/sbin/nft"):
        return False
    probe = f"bs5p{os.getpid() % 100000}"
    ok = sh("ip", "netns", "add", probe, check=False).returncode == 0
    sh("ip", "netns", "del", probe, check=False)
    return ok


@dataclass
class Netns:
    name: str
    veth: str
    address: str  # this namespace's end
    gateway: str  # this machine's end

    def exec(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", self.name, *cmd, check=check)

    def partition(self) -> None:
        """Drop every packet in and out (the link stays up: a silent partition)."""
        self.exec("nft", "add table inet part; add chain inet part in "
                  "{ type filter hook input priority 0; policy drop; }; add chain inet part out "
                  "{ type filter hook output priority 0; policy drop; }")

    def heal(self) -> None:
        self.exec("nft", "delete table inet part", check=False)

    def pids(self) -> list[int]:
        out = sh("ip", "netns", "pids", self.name, check=False).stdout
        return [int(p) for p in out.split()]

    def kill_all(self) -> None:
        """Kill every process of this namespace, by pid (a host crash)."""
        for _ in range(3):
            pids = self.pids()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if not pids:
                return


def remove_stale() -> list[str]:
    """Remove the namespaces (their processes, their veths) that a run killed before its
    cleanup left behind: they hold the test range's addresses, so a new namespace's sshd
    would not be the one that answers. Two runs cannot share the range anyway."""
    names = [line.split()[0] for line in sh("ip", "netns", "list", check=False).stdout
             .splitlines() if line.startswith("bs5-")]
    for name in names:
        tag, _, i = name.removeprefix("bs5-").partition("-")
        Netns(name, f"bs5v{tag}x{i}", "", "").kill_all()
        sh("ip", "link", "del", f"bs5v{tag}x{i}", check=False)
        sh("ip", "netns", "del", name, check=False)
    return names


@contextlib.contextmanager
def namespaces(count: int, *, subnet_base: int = 10):
    """`count` namespaces, removed (with their processes) however the test ends."""
    remove_stale()
    tag = os.getpid() % 1000
    made: list[Netns] = []
    route = sh("ip", "route", "add", "unreachable", TEST_RANGE, check=False).returncode == 0
    try:
        for i in range(count):
            n = subnet_base + i
            ns = Netns(f"bs5-{tag}-{i}", f"bs5v{tag}x{i}", f"10.213.{n}.2", f"10.213.{n}.1")
            sh("ip", "netns", "add", ns.name)
            made.append(ns)
            sh("ip", "link", "add", ns.veth, "type", "veth", "peer", "name", "eth0",
               "netns", ns.name)
            sh("ip", "addr", "add", f"{ns.gateway}/24", "dev", ns.veth)
            sh("ip", "link", "set", ns.veth, "up")
            ns.exec("ip", "addr", "add", f"{ns.address}/24", "dev", "eth0")
            ns.exec("ip", "link", "set", "eth0", "up")
            ns.exec("ip", "link", "set", "lo", "up")
            # The other namespaces' gateways are this machine's addresses: reachable without
            # forwarding, so a Ray worker here can reach a head on another subnet's gateway.
            ns.exec("ip", "route", "add", TEST_RANGE, "via", ns.gateway)
        yield made
    finally:
        for ns in made:
            ns.kill_all()
            sh("ip", "link", "del", ns.veth, check=False)
            sh("ip", "netns", "del", ns.name, check=False)
        if route:
            sh("ip", "route", "del", "unreachable", TEST_RANGE, check=False)
