"""The command line's one error path: a UserError is one line and its exit code; any other
exception is a bug, one line naming the file its traceback was saved to, exit 1."""

import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from db.store import LeaseHeld, SchemaError
from engine.errors import BadInput, UserError
from orchestrator.cli import app, sweeps
from orchestrator.executors.base import ExecutorUnavailable
from orchestrator.hosts import InventoryError
from orchestrator.spec import SpecError
from orchestrator.ssh import HostKeyError, SSHError


def run(*args: str, tmp_path: Path):
    result = CliRunner().invoke(app, [*args, "--db", str(tmp_path / "b.db")],
                                env={"COLUMNS": "300"})
    return result.exit_code, result.output


@pytest.mark.parametrize("cls, code", [
    (SpecError, 2), (InventoryError, 2), (BadInput, 2), (SSHError, 1), (HostKeyError, 1),
    (SchemaError, 1), (LeaseHeld, 1), (ExecutorUnavailable, 1), (UserError, 1),
])
def test_user_errors_share_one_base_and_carry_their_exit_code(cls, code):
    e = cls("something")
    assert isinstance(e, UserError) and e.exit_code == code
    assert UserError("x", 2).exit_code == 2


def test_user_error_is_one_line_and_its_exit_code(tmp_path, monkeypatch):
    def bad_input(db, **_):
        raise UserError("no such [bold]thing[/bold]", 2)

    monkeypatch.setattr(sweeps, "open_store", bad_input)
    code, text = run("status", tmp_path=tmp_path)
    assert code == 2
    assert text.strip() == "error: no such [bold]thing[/bold]"  # user text, not markup


def test_an_error_the_user_can_cause_exits_2(tmp_path):
    code, text = run("export", "s", "-o", str(tmp_path / "x"), "--format", "xml",
                     tmp_path=tmp_path)
    assert code == 2 and text.strip() == "error: --format must be csv, json or parquet, not 'xml'"


def test_a_bug_is_one_line_and_its_traceback_a_file(tmp_path, monkeypatch):
    def buggy(db, **_):
        return {}["missing"]

    monkeypatch.setattr(sweeps, "open_store", buggy)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    code, text = run("status", tmp_path=tmp_path)
    assert code == 1
    assert len(text.strip().splitlines()) == 1, text
    assert text.startswith("error: internal error (a bug in benchsweep): KeyError: 'missing'")
    saved = list(tmp_path.glob("benchsweep-crash-*.txt"))
    assert len(saved) == 1 and str(saved[0]) in text
    trace = saved[0].read_text()
    assert trace.startswith("Traceback") and "in buggy" in trace and "KeyError" in trace


def test_an_exit_code_and_a_usage_error_are_not_bugs(tmp_path, monkeypatch):
    import typer

    def exits(db, **_):
        raise typer.Exit(3)

    monkeypatch.setattr(sweeps, "open_store", exits)
    assert run("status", tmp_path=tmp_path) == (3, "")
    code, text = run("status", "--no-such-flag", tmp_path=tmp_path)
    assert code == 2 and "No such option" in text and "internal error" not in text
