"""benchsweep's settings from the environment: one field per BENCHSWEEP_* variable, read in
one place (torch-free; every layer imports it).

`settings()` reads the variables again whenever one of them has changed, so a test's
monkeypatch.setenv, a bench script's os.environ[...] = ... and a job subprocess's inherited
environment are all seen; a command line flag, where there is one, wins over its variable.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass
from pathlib import Path

from engine.errors import UserError

PREFIX = "BENCHSWEEP_"


@dataclass(frozen=True)
class Settings:
    # BENCHSWEEP_DB: the database, a SQLAlchemy URL or a SQLite path (`--db` wins);
    # None: ./benchsweep.db.
    db: str | None = None
    # BENCHSWEEP_DB_FILE: a file whose first line is the database URL, so a password stays
    # out of `ps` and the environment; read when neither `--db` nor BENCHSWEEP_DB is set.
    db_file: Path | None = None
    # BENCHSWEEP_HOSTS: the SSH inventory file (`--inventory`/`--hosts` and the sweep
    # file's executor.hosts win); None: ./hosts.yaml.
    hosts: Path | None = None
    # BENCHSWEEP_CACHE: random-weight checkpoints and vLLM's compile cache.
    cache: Path = Path("~/.cache/benchsweep").expanduser()
    # BENCHSWEEP_SSH_LIVENESS_S: seconds a remote host may not answer before its attempt
    # is lost and the job runs again elsewhere.
    ssh_liveness_s: float = 60.0
    # BENCHSWEEP_SSH_WATCHDOG_S: seconds without a poll before a remote job kills itself;
    # 0: twice ssh_liveness_s (at least 20).
    ssh_watchdog_s: float = 0.0
    # BENCHSWEEP_SSH_QUARANTINE_S: seconds a host that failed its probe gets no job.
    ssh_quarantine_s: float = 300.0
    # BENCHSWEEP_GPU_HYGIENE: 0 switches off the idle-GPU checks around each job.
    gpu_hygiene: bool = True
    # BENCHSWEEP_GPU_IDLE_MAX_USED_MIB: memory in use (MiB) under which a GPU counts as
    # idle; None: engine.gpu_hygiene's IDLE_MAX_USED_BYTES (2 GiB).
    gpu_idle_max_used_mib: int | None = None


FIELDS = tuple(f.name for f in dataclasses.fields(Settings))


def env_name(field: str) -> str:
    """The variable of a field: ssh_liveness_s -> BENCHSWEEP_SSH_LIVENESS_S."""
    return PREFIX + field.upper()


def settings() -> Settings:
    """The settings as the environment has them now (parsed once per distinct value)."""
    return _parse(tuple(os.environ.get(env_name(f)) or None for f in FIELDS))


# How a variable's text becomes its field's value; the rest are seconds (float).
_PARSERS = {
    "db": str,
    "db_file": lambda raw: Path(raw).expanduser(),
    "hosts": Path,
    "cache": lambda raw: Path(raw).expanduser(),
    "gpu_hygiene": lambda raw: raw != "0",
    "gpu_idle_max_used_mib": lambda raw: int(raw) if raw.isdigit() else None,
}


@functools.lru_cache(maxsize=16)
def _parse(values: tuple[str | None, ...]) -> Settings:
    out: dict = {}
    for name, raw in zip(FIELDS, values, strict=True):
        if raw is None:
            continue
        try:
            out[name] = _PARSERS.get(name, float)(raw)
        except ValueError:
            raise UserError(f"{env_name(name)}={raw!r} is not a number", 2) from None
    return Settings(**out)
