import itertools
import os

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

_db_counter = itertools.count()


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
