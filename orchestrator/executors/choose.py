"""Which executor a sweep runs on, and which inventory file names its hosts: the command
line's flag first, then the sweep file's executor section, then the environment
(BENCHSWEEP_HOSTS), then the default. One rule for every command that reads them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from engine.errors import UserError
from engine.settings import settings
from orchestrator.executors.base import Executor, ExecutorUnavailable

EXECUTOR_KINDS = ("local", "ssh", "ray")
DEFAULT_INVENTORY = Path("hosts.yaml")


def inventory_path(flag: Path | None, sweep_value: str | None = None,
                   sweep_file: Path | None = None) -> Path:
    """The inventory file: the flag, the sweep file's `executor.hosts` (relative to the sweep
    file), $BENCHSWEEP_HOSTS, hosts.yaml."""
    if flag is not None:
        return flag
    if sweep_value:
        base = sweep_file.parent if sweep_file else Path()
        return base / Path(sweep_value).expanduser()
    return settings().hosts or DEFAULT_INVENTORY


def executor_kind(flag: str | None, section) -> str:
    """The flag, else the sweep file's kind. UserError (exit 2) names a kind that does not
    exist."""
    if flag not in (None, *EXECUTOR_KINDS):
        raise UserError(f"--executor must be local, ssh or ray, not {flag!r}", 2)
    return flag or section.kind


def executor_starter(kind: str, section, sweep_file: Path, store, *, slots: int | None,
                     hosts: Path | None, address: str | None, log: Callable[[str], None]
                     ) -> Callable[[], Executor]:
    """What starts the executor a sweep runs on (kind from executor_kind), checked now and
    started only when called: a sweep with nothing left to run starts no Ray and reaches no
    host. UserError now: the user's choice is wrong (exit 2: no address, a bad inventory);
    ExecutorUnavailable when started: it cannot start (exit 1)."""
    if kind == "ssh":
        from orchestrator.hosts import Inventory

        path = inventory_path(hosts, section.hosts, sweep_file)
        inv = Inventory.load(path)

        def start_ssh() -> Executor:
            from orchestrator.executors.ssh import SSHExecutor

            try:
                return SSHExecutor(inv, store=store, log=log)
            except ExecutorUnavailable as e:
                raise ExecutorUnavailable(f"{path}: {e}") from None

        return start_ssh
    if kind == "ray":
        address = address or section.address
        if not address:
            raise UserError("the ray executor needs --address (or executor.address in the "
                            "sweep file)", 2)

        def start_ray() -> Executor:
            from orchestrator.executors.ray_cluster import RayClusterExecutor

            try:
                return RayClusterExecutor(address)
            except (ExecutorUnavailable, ConnectionError) as e:
                raise ExecutorUnavailable(f"ray cluster {address}: {e}") from None

        return start_ray

    def start_local() -> Executor:
        from orchestrator.executors.local import LocalExecutor

        return LocalExecutor(cpu_slots=slots or section.slots)

    return start_local
