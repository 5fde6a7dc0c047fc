"""engine.settings: one field per BENCHSWEEP_* variable, read again when the environment
changes, and the only place that reads them."""

import dataclasses
import re
from pathlib import Path

import pytest

from engine.errors import UserError
from engine.settings import FIELDS, Settings, env_name, settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def clean_env(monkeypatch):
    for f in FIELDS:
        monkeypatch.delenv(env_name(f), raising=False)
    return monkeypatch


def test_defaults(clean_env):
    s = settings()
    assert s == Settings()
    assert (s.db, s.hosts, s.ssh_liveness_s, s.ssh_watchdog_s, s.ssh_quarantine_s) == (
        None, None, 60.0, 0.0, 300.0)
    assert s.cache == Path("~/.cache/benchsweep").expanduser()
    assert s.gpu_hygiene and s.gpu_idle_max_used_mib is None


def test_each_variable_and_a_change_is_seen(clean_env, tmp_path):
    clean_env.setenv("BENCHSWEEP_DB", "sqlite:////tmp/x.db")
    clean_env.setenv("BENCHSWEEP_HOSTS", "inv.yaml")
    clean_env.setenv("BENCHSWEEP_CACHE", str(tmp_path))
    clean_env.setenv("BENCHSWEEP_SSH_LIVENESS_S", "12")
    clean_env.setenv("BENCHSWEEP_SSH_WATCHDOG_S", "3.5")
    clean_env.setenv("BENCHSWEEP_SSH_QUARANTINE_S", "20")
    clean_env.setenv("BENCHSWEEP_GPU_HYGIENE", "0")
    clean_env.setenv("BENCHSWEEP_GPU_IDLE_MAX_USED_MIB", "4096")
    assert settings() == Settings(db="sqlite:////tmp/x.db", hosts=Path("inv.yaml"),
                                  cache=tmp_path, ssh_liveness_s=12.0, ssh_watchdog_s=3.5,
                                  ssh_quarantine_s=20.0, gpu_hygiene=False,
                                  gpu_idle_max_used_mib=4096)
    clean_env.setenv("BENCHSWEEP_SSH_LIVENESS_S", "30")
    clean_env.setenv("BENCHSWEEP_GPU_IDLE_MAX_USED_MIB", "lots")  # not a number: the default
    clean_env.setenv("BENCHSWEEP_DB", "")  # empty: unset
    s = settings()
    assert s.ssh_liveness_s == 30.0 and s.gpu_idle_max_used_mib is None and s.db is None


def test_a_bad_number_is_a_user_error(clean_env):
    clean_env.setenv("BENCHSWEEP_SSH_QUARANTINE_S", "5m")
    with pytest.raises(UserError, match="BENCHSWEEP_SSH_QUARANTINE_S='5m' is not a number") as e:
        settings()
    assert e.value.exit_code == 2


def test_readme_lists_every_variable_in_one_table():
    readme = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| `(BENCHSWEEP_\w+)` \|", readme, re.M)
    assert sorted(rows) == sorted(env_name(f.name) for f in dataclasses.fields(Settings))


def test_no_other_module_reads_a_variable():
    pattern = re.compile(r"(environ\.get|getenv|environ\[|envvar=)\(?\s*\"BENCHSWEEP_")
    readers = [str(p.relative_to(ROOT)) for d in ("orchestrator", "db", "dashboard", "engine")
               for p in (ROOT / d).rglob("*.py") if pattern.search(p.read_text())]
    assert readers == []
