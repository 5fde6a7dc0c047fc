"""The command line's one error path: a UserError is one line and its exit code; any other
exception is a bug, one line naming the file its traceback was saved to, exit 1."""

import tempfile
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from db.store import LeaseHeld, SchemaError, Store
from engine.errors import BadInput, UserError
from orchestrator.cli import app, sweeps
from orchestrator.executors.base import ExecutorUnavailable
from orchestrator.hosts import InventoryError
from orchestrator.spec import SpecError
from orchestrator.ssh import HostKeyError, SSHError
from tests.engine.test_result import make


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


def help_text(*args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def test_version():
    from importlib import metadata

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"orchestrate (benchsweep) {metadata.version('benchsweep')}\n"


def _commands(group, path=()):
    import click

    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*path, name))
        else:
            yield (*path, name), cmd


# The commands whose declarations live in cli/engine.py, cli/hosts.py and `sweep`.
OWN = ("sweep", "bench", "model", "hosts")


def test_every_option_shows_its_default_and_flags_take_no_value():
    import typer

    root = typer.main.get_command(app)
    for path, cmd in _commands(root):
        text = help_text(*path)
        assert "<bool>" not in text, path  # `--dry-run`, not `--dry-run <bool>`
        if path[0] not in OWN:
            continue
        for p in cmd.params:
            if getattr(p, "is_flag", False) or p.required:
                continue
            # A value typer prints ([default: 256]), or a string saying what None means.
            assert isinstance(p.show_default, str) or p.default not in (None, ""), (path, p.name)
    text = help_text("sweep")
    assert ("[default: ($BENCHSWEEP_DB, the URL in $BENCHSWEEP_DB_FILE, else "
            "./benchsweep.db)]") in text
    assert text.count("[default: 100000]") == 1
    assert "[default: (the sweep file's, else local)]" in text


def test_dash_o_is_an_output_path_everywhere():
    import typer

    root = typer.main.get_command(app)
    for path, cmd in _commands(root):
        for p in cmd.params:
            if "-o" in getattr(p, "opts", ()):
                assert p.name in ("output",), (path, p.name)
    assert "-O" in help_text("bench")  # an engine option, NAME=VALUE


# --- what a user typed prints as text, never as Rich markup -------------------------------

MARKUP_NAMES = ["[/]", "nano[async]", "[bold]x"]


def test_dry_run_prints_variant_names_as_they_are(tmp_path):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump({
        "name": "s", "model": {"arch": "tiny"}, "workload": {"num_seqs": 2},
        "variants": {"[/]": {"kind": "hf"}, "nano[async]": {"kind": "nano"},
                     "[bold]x": {"kind": "nano", "options": {"enforce_eager": True}}},
        "matrix": {"max_num_seqs": [2]}, "baseline": "[/]"}))
    code, text = run("sweep", str(sweep), "--dry-run", tmp_path=tmp_path)
    assert code == 0, text
    for name in MARKUP_NAMES:
        assert f" {name} " in text
    assert "baseline [/]" in text and not (tmp_path / "b.db").exists()


def test_results_and_status_print_variant_names_and_errors_as_they_are(tmp_path):
    store = Store(str(tmp_path / "b.db"))
    sid = store.upsert_sweep("s", "name: s", "[/]")
    store.add_jobs(sid, [
        dict(key=f"k{i}", ordinal=i, variant=v, engine="nano", options={}, model="m",
             workload="standard", workload_fingerprint="fp", max_num_seqs=2,
             gpu_memory_utilization=0.9, repeat=0, spec="{}")
        for i, v in enumerate(MARKUP_NAMES)])
    for i, job in enumerate(store.pending_jobs(sid, [f"k{i}" for i in range(3)])):
        at = store.start_attempt(job.id, "h", "0")
        if i < 2:
            store.finish_attempt(at, "succeeded", job_state="succeeded", result=make(
                output_tokens=100, elapsed_s=1.0 + i))
        else:
            store.finish_attempt(at, "failed", job_state="failed", error_kind="bad_input",
                                 error="option [red]x[/red] unknown")
    code, text = run("results", "s", tmp_path=tmp_path)
    assert code == 0, text
    assert " [/] " in text and " nano[async] " in text
    code, text = run("status", "s", tmp_path=tmp_path)
    assert code == 0, text
    assert "│ [bold]x │" in text and "option [red]x[/red] unknown" in text


@pytest.mark.parametrize("args", [("status",), ("results", "s"),
                                  ("export", "s", "-o", "out.csv"), ("hosts", "list")])
def test_reading_commands_never_create_a_database(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BENCHSWEEP_HOSTS", str(tmp_path / "none.yaml"))
    code, text = run(*args, tmp_path=tmp_path)
    if args == ("hosts", "list"):  # the inventory alone, nothing to read in the database
        assert code == 0, text
    else:
        assert (code, text.strip()) == (1, f"error: no database at {tmp_path / 'b.db'}; run "
                                           f"a sweep first")
    assert list(tmp_path.iterdir()) == []


def test_a_password_in_the_url_is_never_printed(tmp_path, monkeypatch):
    secret = tmp_path / "db.url"
    secret.write_text("postgresql://bench:hunter2@127.0.0.1:1/nothing\n")
    result = CliRunner().invoke(app, ["status", "--db", f"@{secret}"])
    assert result.exit_code == 1
    assert result.output.startswith("error: cannot open database "
                                    "postgresql+psycopg://bench:***@127.0.0.1:1/nothing: ")
    assert "hunter2" not in result.output
    monkeypatch.setenv("BENCHSWEEP_DB_FILE", str(secret))
    result = CliRunner().invoke(app, ["hosts", "add", "x", "--address", "h", "--inventory",
                                      str(tmp_path / "h.yaml")])
    assert result.exit_code == 1 and "bench:***@" in result.output
    assert "hunter2" not in result.output and not (tmp_path / "h.yaml").exists()


def test_status_and_dry_run_start_without_pandas_or_ray(tmp_path):
    """The commands a user runs most often start in about a second: they import neither
    pandas (half a second) nor Ray (with torch, engine-side, never)."""
    import subprocess
    import sys

    Store(f"sqlite:///{tmp_path / 'b.db'}").close()
    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\nmodel: {arch: tiny}\nworkload: {num_seqs: 2}\n"
                    "variants: {nano: {kind: nano}}\nmatrix: {max_num_seqs: [2]}\n")
    probe = ("import sys\nfrom typer.testing import CliRunner\nfrom orchestrator.cli import app\n"
             "for args in sys.argv[1:]:\n"
             "    r = CliRunner().invoke(app, args.split())\n"
             "    assert r.exit_code == 0, r.output\n"
             "print(sorted({'pandas', 'ray', 'torch', 'scipy'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", probe, f"status --db {tmp_path / 'b.db'}",
                           f"sweep {spec} --dry-run"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2], timeout=120)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_an_attempt_line_carries_the_gpu_mark():
    from datetime import datetime
    from types import SimpleNamespace

    from engine.gpu_telemetry import Reading, Telemetry
    from orchestrator.executors.base import Outcome

    job = SimpleNamespace(ordinal=3, variant="v", max_num_seqs=8, gpu_memory_utilization=0.9,
                          repeat=0)
    tel = Telemetry(1.0, done_s=2.0)
    tel.add(1.0, Reading(gpu_pct=99, throttle=0x40), others=0)
    now = datetime(2026, 12, 3, 12, 0, 0)
    out = Outcome("succeeded", "h", "0", result=make(output_tokens=10, elapsed_s=2.0),
                  telemetry=tel)
    assert sweeps.attempt_line(job, out, now).endswith(
        "succeeded 5.0 tok/s (GPU mark: throttled (hw_thermal))")
    out.telemetry = None
    assert sweeps.attempt_line(job, out, now).endswith("succeeded 5.0 tok/s")


def test_bench_prints_the_gpu_summary_and_mark(tmp_path, monkeypatch):
    from engine.gpu_telemetry import Reading, Telemetry
    from orchestrator.executors import local, process
    from orchestrator.executors.base import Outcome

    tel = Telemetry(1.0, done_s=3.0)
    for t in range(4):
        tel.add(float(t), Reading(gpu_pct=90, power_w=500.0, temp_c=60 + t, throttle=0x8),
                others=0)
    ran = []

    def fake_run(jobs, **kw):
        ran.append(kw)
        return [Outcome("succeeded", "h", "0", result=make(output_tokens=10, elapsed_s=2.0),
                        telemetry=tel)]

    monkeypatch.setattr(process, "run_job_process", fake_run)
    monkeypatch.setattr(local, "visible_gpus", lambda: ["0"])
    result = CliRunner().invoke(app, ["bench", "--engine", "nano", "--arch", "tiny"],
                                env={"COLUMNS": "300"})
    code, output = result.exit_code, result.output
    assert code == 0, output
    assert ran[0]["cuda_visible_devices"] == "0"
    # The timed generate: the 2 s up to the result line at 3 s, its ends included.
    assert "timed generate: 3 sample(s), GPU 90% busy, 500 W on average, peak 63 °C, " \
           "clock reasons: hw_slowdown" in output
    assert "GPU mark" in output and "throttled (hw_slowdown)" in output.split("GPU mark")[1]
