"""Every bad input is one line, never a traceback, and nothing is written (issue 15 §4).

Hypothesis generates malformed sweep files and inventories (more than 1,000 between them) and
feeds each through the command line's entry, in process (click's CliRunner, for speed):
exit 2, exactly one line on stderr (`error: ...`), nothing on stdout, no traceback, no
database file and no inventory written. Each generated input is malformed by construction;
should one slip through as valid, the command would go on to create the database (the
sweep's `--executor ray` without an address fails only after that) and the test fails. A
few fixed cases run as real processes, and so do the bad databases."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.main import get_command

from engine.workload import MAX_NUM_SEQS
from orchestrator.bounded_yaml import MAX_DEPTH
from orchestrator.cli import app
from orchestrator.hosts import NAME as HOST_NAME

ROOT = Path(__file__).resolve().parents[2]
SWEEP_EXAMPLES, INVENTORY_EXAMPLES = 650, 450  # > 1,000 malformed inputs in all
PROPERTY = settings(deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SWEEP = {"name": "s", "model": {"arch": "tiny"},
         "workload": {"name": "standard", "num_seqs": 4, "input_len": [4, 8],
                      "output_len": [2, 4]},
         "variants": {"hf": {"kind": "hf"}, "nano": {"kind": "nano"}},
         "matrix": {"variant": ["hf", "nano"], "max_num_seqs": [2]},
         "repeats": 1, "timeout_s": 60, "baseline": "hf"}
INVENTORY = {"hosts": {"box": {"address": "127.0.0.1", "port": 1, "workdir": "~/bs"}}}
SWEEP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _not_a_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return True
    return False


words = st.text(min_size=1, max_size=20)
junk = st.one_of(st.lists(st.integers(), max_size=3), st.dictionaries(words, st.integers(),
                                                                        max_size=2))
not_numbers = st.text(max_size=12).filter(_not_a_number)
control = st.sampled_from(["\n", "\0", "\r", "\t", "\x1b", "\x7f"])


def with_char(chars):
    """A string holding at least one of `chars`."""
    return st.tuples(st.text(max_size=8), chars, st.text(max_size=8)).map("".join)


# --- raw text: bytes, depth, duplicates, syntax ---------------------------------------------

def nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


raw_sweeps = st.one_of(
    # not UTF-8: a byte that never starts a UTF-8 sequence, somewhere
    st.tuples(st.binary(max_size=200), st.sampled_from([b"\xff", b"\xfe", b"\xc0\x20"]),
              st.binary(max_size=200)).map(b"".join),
    # nested deeper than the bound, in a field or at the top
    st.integers(MAX_DEPTH + 1, 3 * MAX_DEPTH).map(lambda d: f"name: s\nmatrix: {nested(d)}\n"),
    st.integers(MAX_DEPTH + 1, 3 * MAX_DEPTH).map(lambda d: "{a: " * d + "1" + "}" * d),
    # a key given twice
    st.sampled_from(["name", "model", "repeats"]).map(
        lambda k: yaml.safe_dump(SWEEP, sort_keys=False) + f"{k}: again\n"),
    # not YAML at all
    st.tuples(words, st.sampled_from(["[", "{", "'", '"', ": : :\n  - ", "\t- x", "&a *b"]))
    .map(lambda t: f"name: {t[1]}{t[0]}\n"),
    # YAML, but not a mapping
    st.one_of(st.lists(st.integers(), max_size=4), st.integers(), words,
              st.none()).map(yaml.safe_dump),
)
# YAML that is not a mapping (an empty document is an empty inventory, which is valid)
not_mappings = st.one_of(st.lists(st.integers(), min_size=1, max_size=4),
                         st.integers().filter(bool), words).map(yaml.safe_dump)


# --- a valid sweep with one field made wrong ------------------------------------------------

def sweep_with(path: tuple, value) -> dict:
    d = copy.deepcopy(SWEEP)
    *outer, last = path
    target = d
    for k in outer:
        target = target[k]
    target[last] = value
    return d


def sweep_without(key: str) -> dict:
    d = copy.deepcopy(SWEEP)
    del d[key]
    return d


bad_fields = st.one_of(
    st.sampled_from(["name", "model", "variants", "matrix"]).map(sweep_without),
    st.one_of(words.filter(lambda s: not SWEEP_NAME.fullmatch(s)), junk)
    .map(lambda v: sweep_with(("name",), v)),
    st.one_of(st.integers(max_value=0), st.integers(min_value=1001), not_numbers)
    .map(lambda v: sweep_with(("repeats",), v)),
    st.one_of(st.floats(max_value=0, allow_nan=False), not_numbers)
    .map(lambda v: sweep_with(("timeout_s",), v)),
    st.one_of(st.integers(max_value=-1), st.integers(min_value=11))
    .map(lambda v: sweep_with(("retries",), v)),
    st.one_of(st.integers(max_value=0), st.integers(min_value=MAX_NUM_SEQS + 1), junk)
    .map(lambda v: sweep_with(("workload", "num_seqs"), v)),
    st.one_of(st.tuples(st.integers(2, 100), st.integers(1, 1)).map(list),
              st.tuples(st.integers(max_value=0), st.integers(1, 10)).map(list),
              st.lists(st.integers(1, 10), min_size=3, max_size=4), not_numbers)
    .map(lambda v: sweep_with(("workload", "input_len"), v)),
    words.filter(lambda s: s not in ("standard", "phase1"))
    .map(lambda v: sweep_with(("workload", "name"), v)),
    words.filter(lambda s: s not in ("hf", "nano", "vllm"))
    .map(lambda v: sweep_with(("variants", "nano", "kind"), v)),
    words.map(lambda v: sweep_with(("variants", "nano", "options"), {f"no_such_{v}": 1})),
    words.map(lambda v: sweep_with(("variants", "nano", f"no_such_{v}"), 1)),
    st.just({}).map(lambda v: sweep_with(("variants",), v)),
    words.filter(lambda s: s not in ("hf", "nano"))
    .map(lambda v: sweep_with(("matrix", "variant"), [v])),
    words.filter(lambda s: s not in ("hf", "nano"))
    .map(lambda v: sweep_with(("baseline",), v)),
    words.map(lambda v: sweep_with((f"no_such_{v}",), 1)),
    words.filter(lambda s: s not in ("local", "ray", "ssh"))
    .map(lambda v: sweep_with(("executor",), {"kind": v})),
    words.filter(lambda s: s not in ("tiny",) and not s.startswith("qwen"))
    .map(lambda v: sweep_with(("model",), {"arch": f"no-such-{v}"})),
)
sweep_files = st.one_of(raw_sweeps, bad_fields.map(lambda d: yaml.safe_dump(d)))


# --- inventories ------------------------------------------------------------------------------

def inventory_with(field: str, value) -> dict:
    d = copy.deepcopy(INVENTORY)
    d["hosts"]["box"][field] = value
    return d


raw_inventories = st.one_of(
    st.tuples(st.binary(max_size=200), st.just(b"\xff"), st.binary(max_size=200))
    .map(b"".join),
    st.integers(MAX_DEPTH + 1, 3 * MAX_DEPTH).map(lambda d: f"hosts: {nested(d)}\n"),
    st.just(yaml.safe_dump(INVENTORY) + "hosts: {}\n"),
    st.tuples(words, st.sampled_from(["[", "{", "'", '"', "\t- x"]))
    .map(lambda t: f"hosts: {t[1]}{t[0]}\n"),
    not_mappings,
)


bad_hosts = st.one_of(
    st.one_of(st.integers(max_value=0), st.integers(min_value=65536), not_numbers)
    .map(lambda v: inventory_with("port", v)),
    st.sampled_from(["workdir", "python", "key_file"]).flatmap(
        lambda f: with_char(control).map(lambda v: inventory_with(f, v))),
    st.sampled_from(["workdir", "python"]).map(lambda f: inventory_with(f, " ")),
    st.tuples(st.sampled_from(["address", "user"]),
              with_char(st.sampled_from([" ", "\n", "\0", "\t"])))
    .map(lambda t: inventory_with(*t)),
    st.text(st.characters(whitelist_categories=("L",)), min_size=1, max_size=8)
    .map(lambda v: inventory_with("workdir", f"~{v}/x")),
    with_char(st.sampled_from(["'", '"'])).filter(lambda s: not _splits(s))
    .map(lambda v: inventory_with("pip_args", v)),
    with_char(st.sampled_from([";", " ", "$", "\n"]))
    .map(lambda v: inventory_with("gpus", [v])),
    junk.map(lambda v: inventory_with("venv", v)),
    words.map(lambda v: inventory_with(f"no_such_{v}", 1)),
    words.map(lambda v: {"hosts": {"box": {"address": "h"}}, f"no_such_{v}": 1}),
    st.one_of(st.integers(), st.lists(st.integers(), max_size=2))
    .map(lambda v: {"hosts": {"box": v}}),
    words.filter(lambda s: not HOST_NAME.match(s))
    .map(lambda v: {"hosts": {v: {"address": "h"}}}),
    st.just({"hosts": {"box": {"port": 22}}}),  # no address
)
inventories = st.one_of(raw_inventories, bad_hosts.map(lambda d: yaml.safe_dump(d)))


def _splits(s: str) -> bool:
    import shlex

    try:
        shlex.split(s)
    except ValueError:
        return False
    return True


# --- the checks -------------------------------------------------------------------------------

def write(path: Path, content: str | bytes) -> None:
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)


def assert_one_line_and_nothing_written(code: int, stdout: str, stderr: str, where: Path,
                                        before: set[str]) -> None:
    lines = stderr.strip("\n").splitlines()
    assert code == 2, (code, stdout, stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stdout + stderr and "internal error" not in stderr, stderr
    assert stdout == "", stdout
    assert {p.name for p in where.iterdir()} == before, "something was written"


# The root group `orchestrate` runs, built once: typer would rebuild it on every call (40 ms).
ORCHESTRATE = get_command(app)


def invoke(args: list[str], env: dict[str, str] | None = None):
    result = CliRunner().invoke(ORCHESTRATE, args, env={"COLUMNS": "300", **(env or {})})
    return result.exit_code, result.stdout, result.stderr


@settings(PROPERTY, max_examples=SWEEP_EXAMPLES)
@given(content=sweep_files, dry_run=st.booleans())
def test_a_malformed_sweep_file_is_one_line_and_writes_nothing(content, dry_run):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write(tmp / "sweep.yaml", content)
        mode = ["--dry-run"] if dry_run else ["--executor", "ray"]
        code, out, err = invoke(["sweep", str(tmp / "sweep.yaml"), "--db", str(tmp / "b.db"),
                                 *mode])
        assert_one_line_and_nothing_written(code, out, err, tmp, {"sweep.yaml"})


@settings(PROPERTY, max_examples=INVENTORY_EXAMPLES)
@given(content=inventories,
       command=st.sampled_from([["check"], ["provision"], ["list"], ["remove", "box"],
                                ["join", "--head", "127.0.0.1:1"],
                                ["add", "new", "--address", "h"]]))
def test_a_malformed_inventory_is_one_line_and_writes_nothing(content, command):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write(tmp / "hosts.yaml", content)
        code, out, err = invoke(["hosts", *command, "--inventory", str(tmp / "hosts.yaml"),
                                 "--db", str(tmp / "b.db")])
        assert_one_line_and_nothing_written(code, out, err, tmp, {"hosts.yaml"})
        assert (tmp / "hosts.yaml").read_bytes() == (
            content if isinstance(content, bytes) else content.encode())


@settings(PROPERTY, max_examples=100)
@given(field=st.sampled_from(["--workdir", "--python", "--key-file"]), value=with_char(control))
def test_hosts_add_refuses_a_value_that_cannot_be_a_path(field, value):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        code, out, err = invoke(["hosts", "add", "box", "--address", "h", field, value,
                                 "--inventory", str(tmp / "hosts.yaml"),
                                 "--db", str(tmp / "b.db")])
        assert_one_line_and_nothing_written(code, out, err, tmp, set())


# --- as real processes --------------------------------------------------------------------

def orchestrate(*args: str, cwd: Path, user: list[str] | None = None):
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="300")
    env.pop("BENCHSWEEP_DB", None)
    return subprocess.run([*(user or []), sys.executable, "-m", "orchestrator.cli", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


FIXED = [
    ("sweep.yaml", b"name: s\n\xff\xfe\n", ["sweep", "sweep.yaml"], 2, "not UTF-8"),
    ("sweep.yaml", f"name: s\nmatrix: {nested(200)}\n".encode(), ["sweep", "sweep.yaml"], 2,
     f"nested deeper than {MAX_DEPTH} levels"),
    ("sweep.yaml", b"x" * ((1 << 20) + 1), ["sweep", "sweep.yaml"], 2, "larger than"),
    ("hosts.yaml", b"hosts: {box: {address: h, workdir: \"/w\\nx\"}}\n",
     ["hosts", "check", "-i", "hosts.yaml"], 2, "cannot be a path"),
    ("b.db", bytes(range(256)) * 16, ["status", "--db", "b.db"], 2, "is not a benchsweep "
                                                                      "database"),
    (None, None, ["status", "--db", "foo://x"], 2, "'foo' is not a supported database"),
    (None, None, ["results", "s", "--db", "postgresql://u:hunter2@h:port/d"], 2,
     "its port is not a number"),
    (None, None, ["export", "s", "-o", "x.csv", "--db", "mysql://u:hunter2@h/d"], 2,
     "needs the Python driver"),
    (None, None, ["status"], 1, "no database at benchsweep.db; run a sweep first"),
]


@pytest.mark.parametrize("name, content, args, code, message", FIXED)
def test_as_a_real_process(tmp_path, name, content, args, code, message):
    if name:
        (tmp_path / name).write_bytes(content)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    proc = orchestrate(*args, cwd=tmp_path)
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert "Traceback" not in proc.stdout + proc.stderr and "hunter2" not in proc.stderr
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="runs the CLI as an unprivileged user (root writes any file)")
def test_a_read_only_database_file_fails_before_anything_starts():
    from db.store import Store

    with tempfile.TemporaryDirectory() as tmp:  # under /tmp, which the user can reach
        tmp = Path(tmp)
        tmp.chmod(0o755)
        Store(str(tmp / "b.db")).close()
        (tmp / "b.db").chmod(0o444)
        sweep = tmp / "demo.yaml"
        shutil.copy(ROOT / "sweeps/demo.yaml", sweep)
        sweep.chmod(0o444)
        before = {p.name: p.read_bytes() for p in tmp.iterdir()}
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        proc = orchestrate("sweep", str(sweep), "--db", str(tmp / "b.db"), cwd=tmp,
                           user=nobody)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert proc.stderr.strip() == (f"error: database {tmp / 'b.db'} does not accept "
                                       f"writes: attempt to write a readonly database")
        assert proc.stdout == ""  # no progress: no executor, no Ray, no job
        assert {p.name: p.read_bytes() for p in tmp.iterdir()} == before
