"""`orchestrate hosts` against a real sshd on loopback (non-standard port): inventory, host
key policy, checks, provisioning, and the Host rows they leave in a real SQLite file."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from db.read.hosts import host_rows
from db.store import Store
from orchestrator.cli import app
from orchestrator.hosts import Host, HostConfig, Inventory, InventoryError, parse_probe, slots_of
from testbed.sshd import free_port, have_sshd, keygen, running_sshd

pytestmark = [pytest.mark.skipif(not have_sshd(), reason="needs openssh-server"),
              pytest.mark.timeout(120)]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def client_key(tmp_path_factory) -> Path:
    return keygen(tmp_path_factory.mktemp("client") / "id_ed25519")


@pytest.fixture
def sshd(tmp_path, client_key):
    with running_sshd(tmp_path / "sshd", client_key.with_suffix(".pub")) as server:
        yield server


def cli(*args: str, inventory: Path, db: Path):
    result = CliRunner().invoke(app, [*args], env={"BENCHSWEEP_HOSTS": str(inventory),
                                                   "BENCHSWEEP_DB": str(db), "COLUMNS": "300"})
    return result.exit_code, result.output


def add(name, sshd, client_key, inv, db, *extra) -> None:
    code, text = cli("hosts", "add", name, "--address", sshd.address, "--port", str(sshd.port),
                     "--key-file", str(client_key), "--workdir", str(sshd.dir / "home/bs"),
                     *extra, inventory=inv, db=db)
    assert code == 0, text


def test_add_check_accept_new_then_known(tmp_path, sshd, client_key):
    inv, db = tmp_path / "hosts.yaml", tmp_path / "b.db"
    add("box1", sshd, client_key, inv, db, "--python", sys.executable, "--setup",
        "export BENCHSWEEP_T=1")
    saved = yaml.safe_load(inv.read_text())
    assert saved["hosts"]["box1"]["port"] == sshd.port
    assert "id_ed25519" in saved["hosts"]["box1"]["key_file"]  # a path, never the key itself

    code, text = cli("hosts", "check", inventory=inv, db=db)
    assert code == 1 and "not in" in text and "--accept-new" in text
    assert not (tmp_path / "known_hosts").exists()
    assert host_rows(Store(str(db)))[0].state == "bad_key"

    code, text = cli("hosts", "check", "--accept-new", inventory=inv, db=db)
    assert code == 0, text
    assert "python 3." in text and "no GPU" in text and "provisioned: no" in text
    known = (tmp_path / "known_hosts").read_text()
    assert f"[127.0.0.1]:{sshd.port}" in known and sshd.host_key_pub() in known

    code, text = cli("hosts", "check", "box1", inventory=inv, db=db)  # known now: no flag
    assert code == 0, text
    row = host_rows(Store(str(db)))[0]
    assert (row.name, row.state, row.port) == ("box1", "ok", sshd.port)
    assert row.last_check["python"].startswith("3.") and row.last_check["gpus"] == []

    code, text = cli("hosts", "list", inventory=inv, db=db)
    assert code == 0 and "box1" in text and "ok" in text

    code, text = cli("hosts", "remove", "box1", inventory=inv, db=db)
    assert code == 0 and host_rows(Store(str(db))) == []
    assert yaml.safe_load(inv.read_text())["hosts"] == {}


def test_changed_host_key_is_an_error(tmp_path, sshd, client_key):
    inv, db = tmp_path / "hosts.yaml", tmp_path / "b.db"
    add("box1", sshd, client_key, inv, db)
    assert cli("hosts", "check", "--accept-new", inventory=inv, db=db)[0] == 0
    before = (tmp_path / "known_hosts").read_text()
    sshd.stop()
    sshd.start(new_host_key=True)
    for flags in ((), ("--accept-new",)):  # not even --accept-new replaces a known key
        code, text = cli("hosts", "check", *flags, inventory=inv, db=db)
        assert code == 1 and "CHANGED" in text, text
    assert (tmp_path / "known_hosts").read_text() == before
    assert host_rows(Store(str(db)))[0].state == "bad_key"


def test_unreachable_host_fails_in_bounded_time(tmp_path, client_key):
    inv, db = tmp_path / "hosts.yaml", tmp_path / "b.db"
    port = free_port()  # nothing listens there
    code, text = cli("hosts", "add", "gone", "--address", "127.0.0.1", "--port", str(port),
                     inventory=inv, db=db)
    assert code == 0, text
    started = time.monotonic()
    code, text = cli("hosts", "check", "--accept-new", inventory=inv, db=db)
    assert code == 1 and f"cannot connect to 127.0.0.1:{port}" in text, text
    assert time.monotonic() - started < 30  # three tries with backoff, then one line
    row = host_rows(Store(str(db)))[0]
    assert row.state == "unreachable" and "cannot connect" in row.last_check["error"]


@pytest.mark.parametrize("body, message", [
    ("hosts: [\n", "not valid YAML"),
    ("hosts: {a: {address: x, prot: 22}}\n", "hosts.a.prot: Extra inputs are not permitted"),
    ("hosts: {a: {address: x, port: 0}}\n", "hosts.a.port"),
    ("hosts: {'bad name': {address: x}}\n", "host name 'bad name'"),
    ('hosts: {a: {address: x, workdir: "/w\\nrm -rf ~"}}\n',
     "hosts.a.workdir: cannot be a path: it holds a newline"),
    ('hosts: {a: {address: x, python: "py\\0"}}\n', "hosts.a.python: cannot be a path"),
    ("hosts: {a: {address: x, workdir: ~bob/w}}\n", "~user paths are not supported"),
    ("hosts: {a: {address: 'x y'}}\n", "hosts.a.address: must be one word"),
    ("hosts: {a: {address: x, pip_args: \"-i 'x\"}}\n", "hosts.a.pip_args: cannot be split"),
    ("hosts: {a: {address: x, gpus: ['0;reboot']}}\n", "'0;reboot' is not a GPU index"),
])
def test_bad_inventory_is_one_clear_line(tmp_path, body, message):
    inv = tmp_path / "hosts.yaml"
    inv.write_text(body)
    with pytest.raises(InventoryError, match=message.replace(".", r"\.")):
        Inventory.load(inv)
    code, text = cli("hosts", "check", inventory=inv, db=tmp_path / "b.db")
    assert code == 2 and message in text and len(text.strip().splitlines()) == 1


def test_add_rejects_missing_key_file(tmp_path):
    code, text = cli("hosts", "add", "x", "--address", "h", "--key-file", "/nonexistent/k",
                     inventory=tmp_path / "h.yaml", db=tmp_path / "b.db")
    assert code == 2 and "no such file" in text and not (tmp_path / "h.yaml").exists()


@pytest.mark.timeout(240)
def test_provision_syncs_builds_and_self_checks(tmp_path, sshd, client_key):
    inv, db = tmp_path / "hosts.yaml", tmp_path / "b.db"
    # The interpreter as it is (an AutoDL conda python with torch): no venv, nothing to
    # download because every requirement is met already.
    # A workdir under ~ (the remote $HOME) whose name holds a blank and shell syntax: quoted,
    # it is one directory and runs nothing.
    add("box1", sshd, client_key, inv, db, "--python", str(ROOT / ".venv/bin/python"),
        "--no-venv", "--pip-args", "--no-index", "--workdir",
        "~/b s;touch pwned;$(touch pw2)")
    home = sshd.dir / "home"
    stale = home / "b s;touch pwned;$(touch pw2)/src/stale.py"
    stale.parent.mkdir(parents=True)
    stale.write_text("gone after a sync")
    code, text = cli("hosts", "provision", "--accept-new", inventory=inv, db=db)
    assert code == 0, text
    assert "provisioned" in text
    assert "hf " in text  # the self-check line names the engines that ran
    src = home / "b s;touch pwned;$(touch pw2)/src"
    assert [p.name for p in home.iterdir() if not p.name.startswith(".")] == [
        "b s;touch pwned;$(touch pw2)"]  # no pwned, pw2 or stray "b"
    assert (src / "engine/bench.py").read_bytes() == (ROOT / "engine/bench.py").read_bytes()
    assert (src / "orchestrator/executors/process.py").exists() and not stale.exists()
    assert not (src / ".venv").exists()  # tracked files only
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()
    assert (src / "REVISION").read_text().startswith(head)
    row = host_rows(Store(str(db)))[0]
    assert row.state == "ok" and row.last_check["provision_s"]["self-check"] > 0
    assert row.last_check["provisioned"] == "yes"


def test_provision_failure_names_the_step(tmp_path, sshd, client_key):
    inv, db = tmp_path / "hosts.yaml", tmp_path / "b.db"
    # A fresh venv from a bare interpreter, pip told not to reach any index: the install
    # step must fail, say so, and leave the host marked unprovisioned.
    base = Path(sys.base_prefix) / "bin/python3"
    add("box1", sshd, client_key, inv, db, "--python", str(base), "--pip-args",
        "--no-index --find-links /nonexistent")
    code, text = cli("hosts", "provision", "--accept-new", inventory=inv, db=db)
    assert code == 1 and "provisioning failed" in text and "install failed" in text, text
    assert (sshd.dir / "home/bs/venv/bin/python").exists()
    assert host_rows(Store(str(db)))[0].state == "unprovisioned"


def test_probe_reads_nvidia_smi_and_gives_one_slot_per_gpu():
    # What the probe prints on a two-GPU box: nvidia-smi's csv,noheader,nounits lines.
    info = parse_probe("python=3.11.7\ndisk_free_gb=41.5\n"
                       "gpu=0, NVIDIA A100-SXM4-80GB, 81920, 4\n"
                       "gpu=1, NVIDIA A100-SXM4-80GB, 81920, 70113\nprovisioned=yes\n")
    assert info["gpus"][1] == dict(index="1", name="NVIDIA A100-SXM4-80GB",
                                   memory_total_mib=81920, memory_used_mib=70113)
    assert (info["python"], info["disk_free_gb"], info["provisioned"]) == ("3.11.7", "41.5",
                                                                           "yes")
    host = Host("a100", HostConfig(address="gw"))
    assert slots_of(host, info) == ["0", "1"]
    assert slots_of(Host("a100", HostConfig(address="gw", gpus=["1"])), info) == ["1"]
    assert slots_of(host, parse_probe("python=3.11.7\n")) == []  # CPU: one slot


@pytest.mark.parametrize("flag, value, message", [
    ("--workdir", "/w\nrm -rf ~", "workdir: cannot be a path"),
    ("--workdir", "/w\0", "workdir: cannot be a path"),
    ("--python", "", "python: must not be empty"),
    ("--address", "h\nx", "address: must be one word"),
    ("--pip-args", "--index-url 'x", "pip_args: cannot be split into words"),
])
def test_add_rejects_what_cannot_be_a_path_and_writes_nothing(tmp_path, flag, value, message):
    args = ["hosts", "add", "x", "--address", "h", flag, value]
    code, text = cli(*args, inventory=tmp_path / "h.yaml", db=tmp_path / "b.db")
    assert code == 2 and message in text and len(text.strip().splitlines()) == 1, text
    assert list(tmp_path.iterdir()) == []


def test_check_checks_each_step_and_names_the_one_that_failed(tmp_path, sshd, client_key):
    inv, db = tmp_path / "hosts.yaml", tmp_path / "b.db"
    (sshd.dir / "home/afile").write_text("a file, not a directory")
    add("good", sshd, client_key, inv, db, "--python", sys.executable)
    add("nodir", sshd, client_key, inv, db, "--python", sys.executable,
        "--workdir", "~/afile/bs")
    add("nopython", sshd, client_key, inv, db, "--python", "/nonexistent/py thon")
    add("badsetup", sshd, client_key, inv, db, "--setup",
        "export PROXY_PASSWORD=hunter2; false")
    code, text = cli("hosts", "check", "--accept-new", inventory=inv, db=db)
    assert code == 1, text
    lines = dict(ln.split(": ", 1) for ln in text.strip().splitlines())
    assert lines["good"].startswith("python 3.")
    assert lines["nodir"].startswith("nodir: workdir ~/afile/bs: mkdir: cannot create "
                                     "directory") and "Not a directory" in lines["nodir"]
    assert lines["nopython"].startswith("nopython: python /nonexistent/py thon: ")
    assert "No such file or directory" in lines["nopython"]
    assert lines["badsetup"] == "badsetup: setup: the setup line failed (exit 1)"
    assert "hunter2" not in text
    states = {r.name: (r.state, r.setup) for r in host_rows(Store(str(db)))}
    assert states == {"good": ("ok", None), "nodir": ("check_failed", None),
                      "nopython": ("check_failed", None),
                      "badsetup": ("check_failed", "export PROXY_PASSWORD=***; false")}
    assert not (sshd.dir / "home/afile/bs").exists()


def test_list_shows_the_inventory_as_text_with_setup_masked(tmp_path, client_key):
    inv, db = tmp_path / "hosts.yaml", tmp_path / "b.db"
    inv.write_text(yaml.safe_dump({"hosts": {"box1": {
        "address": "[bold]gw[/]", "user": "nano[async]", "key_file": str(client_key),
        "setup": "export PROXY_PASSWORD=hunter2 && source /etc/network_turbo"}}}))
    code, text = cli("hosts", "list", inventory=inv, db=db)  # no database yet: none made
    assert code == 0, text
    assert "[bold]gw[/]:22" in text and "nano[async]" in text and "unknown" in text
    assert "PROXY_PASSWORD=***" in text and "hunter2" not in text
    assert not db.exists()
