import itertools
import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

_db_counter = itertools.count()

# Under pytest-xdist (`pytest -n 2 --dist loadgroup`, for a machine with cores to spare; `make
# test` runs in one process: on the 2-core CI machine two workers were slower). Tests that share an
# expensive session fixture, or state of the whole machine, stay on one worker: those of the
# dashboard's database filled by real sweeps, and those that make network namespaces (they
# add and remove one unreachable route for the test range).
NETNS_MODULES = ("tests/e2e/test_ssh.py", "tests/e2e/test_ray_cluster.py")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        if "demo_db" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("demo_db"))
        elif item.nodeid.split("::")[0] in NETNS_MODULES:
            item.add_marker(pytest.mark.xdist_group("netns"))


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    """One BENCHSWEEP_CACHE for the session with the tiny random checkpoint written once
    (seconds each time: torch and transformers' imports, then the write), for every test
    that runs tiny jobs but does not test the cache itself."""
    from engine.checkpoints import ModelRef, resolve

    root = tmp_path_factory.mktemp("cache")
    old = os.environ.get("BENCHSWEEP_CACHE")
    os.environ["BENCHSWEEP_CACHE"] = str(root)
    try:
        resolve(ModelRef(arch="tiny"))
    finally:
        if old is None:
            del os.environ["BENCHSWEEP_CACHE"]
        else:
            os.environ["BENCHSWEEP_CACHE"] = old
    return root


@pytest.fixture(scope="session")
def postgres_root():
    from tests.postgres import postgres_server

    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A fresh, empty database: a real SQLite file, or a new database on a real PostgreSQL
    server started for the session."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'bench.db'}"
        return
    import psycopg

    root = request.getfixturevalue("postgres_root")
    name = f"t{os.getpid()}_{next(_db_counter)}"
    plain = root.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain + "/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield f"{root}/{name}"
