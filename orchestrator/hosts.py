"""The SSH inventory (a YAML file), and what `orchestrate hosts` does to a host: probe it
(`hosts check`: reach it, read nvidia-smi, python, disk) and provision it (sync the
project's tracked files, build its environment, verify `python -m engine.bench
--self-check`).

    known_hosts: known_hosts        # optional; beside this file by default
    hosts:
      a100-1:
        address: connect.westb.seetacloud.com
        port: 23456
        user: root
        key_file: ~/.ssh/id_ed25519
        setup: source /etc/network_turbo      # run before every command (proxy, mirror, conda)
        python: /root/miniconda3/bin/python   # the interpreter the environment is built from
        venv: true      # a venv with --system-site-packages, so a preinstalled torch is used
        pip_args: ""    # e.g. "--no-index --find-links /data/wheels", or a mirror's -i URL
        workdir: ~/benchsweep
        gpus: [0]       # default: every GPU nvidia-smi lists, or one CPU slot without any

Every field but `setup` is data on the remote shell: paths and the interpreter are quoted
(`shell_path`, a leading `~/` still the remote $HOME), `pip_args` split into quoted words,
and a value that cannot be a path (a newline, NUL, another control character) is refused
when the inventory is read or `hosts add` runs. `setup` is the user's own shell line; it may
hold a credential, so the database keeps it masked (db.redact) and `hosts list` shows it so.
`hosts check` checks each step of its probe (the setup line, the workdir, the interpreter,
nvidia-smi) and names the one that failed.
"""

from __future__ import annotations

import io
import json
import re
import shlex
import subprocess
import tarfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from engine.errors import UserError
from orchestrator import bounded_yaml
from orchestrator.ray_resources import slot_resources
from orchestrator.ssh import Connection, Endpoint, SSHError

ROOT = Path(__file__).resolve().parents[1]
SETUP_FAILED = 97  # the exit code of a command whose host's setup line failed


class InventoryError(UserError, ValueError):
    """The inventory file is missing, not YAML, or names a field wrongly (one line)."""

    exit_code = 2


class ProbeFailed(SSHError):
    """The host answered, but a step of the probe failed (its setup line, workdir,
    interpreter or nvidia-smi)."""


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_GPU = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:_./-]*$")


def _path(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    if _CONTROL.search(value):
        raise ValueError("cannot be a path: it holds a newline, NUL or another control "
                         "character")
    if value.startswith("~") and value != "~" and not value.startswith("~/"):
        raise ValueError("~user paths are not supported; give the path from / or ~/")
    return value


class HostConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str = Field(min_length=1)
    port: int = Field(22, gt=0, lt=65536)
    user: str = Field("root", min_length=1)
    key_file: str | None = None
    setup: str | None = None
    python: str = "python3"
    venv: bool = True
    pip_args: str = ""
    workdir: str = "~/benchsweep"
    gpus: list[str] | None = None

    @field_validator("workdir", "python", "key_file")
    @classmethod
    def _a_path(cls, value: str | None) -> str | None:
        return None if value is None else _path(value)

    @field_validator("address", "user")
    @classmethod
    def _one_word(cls, value: str) -> str:
        if _CONTROL.search(value) or any(c.isspace() for c in value):
            raise ValueError("must be one word, without blanks or control characters")
        return value

    @field_validator("pip_args")
    @classmethod
    def _words(cls, value: str) -> str:
        if "\0" in value or "\n" in value:
            raise ValueError("must be one line")
        try:
            shlex.split(value)
        except ValueError as e:
            raise ValueError(f"cannot be split into words: {e}") from None
        return value

    @field_validator("setup")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value is not None and "\0" in value:
            raise ValueError("must not hold a NUL character")
        return value

    @field_validator("gpus")
    @classmethod
    def _gpu_ids(cls, value: list[str] | None) -> list[str] | None:
        for g in value or []:
            if not _GPU.match(g):
                raise ValueError(f"{g!r} is not a GPU index or UUID")
        return value


def config_error(e: ValidationError) -> str:
    """A pydantic error as one line: where, then what."""
    first = e.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    return f"{loc}: {first['msg'].removeprefix('Value error, ')}"


def host_config(**fields) -> HostConfig:
    """A host's config from `hosts add`'s flags; InventoryError names a bad field."""
    try:
        return HostConfig(**fields)
    except ValidationError as e:
        raise InventoryError(config_error(e)) from None


def shell_path(path: str) -> str:
    """A remote path (or command) as one shell word: quoted, except that a leading `~/` is
    still the remote user's home."""
    if path == "~" or path.startswith("~/"):
        return '"$HOME"' + (f"/{shlex.quote(path[2:])}" if path[2:] else "")
    return shlex.quote(path)


def shell_words(args: str) -> str:
    """Extra arguments (pip_args, ray_args) as quoted words: flags, never shell syntax."""
    try:
        return " ".join(shlex.quote(w) for w in shlex.split(args))
    except ValueError as e:
        raise UserError(f"cannot split {args!r} into arguments: {e}", 2) from None


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    known_hosts: str | None = None
    hosts: dict[str, HostConfig] = {}


NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\Z")  # \Z: no trailing newline


@dataclass(frozen=True)
class Host:
    name: str
    config: HostConfig

    @property
    def endpoint(self) -> Endpoint:
        c = self.config
        return Endpoint(self.name, c.address, c.port, c.user, c.key_file)

    @property
    def src(self) -> str:
        return f"{self.config.workdir.rstrip('/')}/src"

    @property
    def python(self) -> str:
        """The environment's interpreter, once provisioned."""
        c = self.config
        return f"{c.workdir.rstrip('/')}/venv/bin/python" if c.venv else c.python

    def shell(self, command: str) -> str:
        """`command` as the host runs it: after its setup line, and only if that succeeded
        (exit 97 and one line naming it otherwise)."""
        if not self.config.setup:
            return command
        return (f"{{ {self.config.setup}\n}} || {{ echo \"the setup line failed (exit $?)\"; "
                f"exit {SETUP_FAILED}; }}\n{command}")


@dataclass
class Inventory:
    path: Path
    known_hosts: Path
    hosts: dict[str, Host]

    @classmethod
    def load(cls, path: Path, *, missing_ok: bool = False) -> Inventory:
        if not path.exists():
            if missing_ok:
                return cls(path, path.parent / "known_hosts", {})
            raise InventoryError(f"{path}: no such inventory file")
        try:
            raw = bounded_yaml.load(bounded_yaml.read_text(path))[1] or {}
            data = _File.model_validate(raw)
        except bounded_yaml.BoundedYAMLError as e:
            where = f" line {e.line}" if e.line else ""
            raise InventoryError(f"{path}{where}: {e.message}") from None
        except OSError as e:
            raise InventoryError(f"{path}: cannot read: {e.strerror}") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise InventoryError(f"{path}{where}: not valid YAML "
                                 f"({getattr(e, 'problem', e)})") from None
        except ValidationError as e:
            raise InventoryError(f"{path}: {config_error(e)}") from None
        for name in data.hosts:
            if not NAME.match(name):
                raise InventoryError(f"{path}: host name {name!r} must be letters, digits, "
                                     f"'.', '_' or '-'")
        kh = Path(data.known_hosts).expanduser() if data.known_hosts else Path("known_hosts")
        return cls(path, kh if kh.is_absolute() else path.parent / kh,
                   {n: Host(n, c) for n, c in data.hosts.items()})

    def save(self) -> None:
        data: dict = {}
        if self.known_hosts != self.path.parent / "known_hosts":
            data["known_hosts"] = str(self.known_hosts)
        data["hosts"] = {n: h.config.model_dump(exclude_defaults=True)
                         for n, h in self.hosts.items()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(data, sort_keys=False))
        tmp.replace(self.path)

    def get(self, name: str) -> Host:
        if name not in self.hosts:
            raise InventoryError(f"no host named {name!r} in {self.path}")
        return self.hosts[name]

    def select(self, names: list[str] | None) -> list[Host]:
        return [self.get(n) for n in names] if names else list(self.hosts.values())

    def connect(self, host: Host, *, accept_new: bool = False, **kw) -> Connection:
        return Connection(host.endpoint, self.known_hosts, accept_new=accept_new, **kw)


# --- probe -----------------------------------------------------------------------------

# Each step prints key=value, or error=<step>: <its last line of output>; the probe goes on
# past a failed step, so one check names every problem.
_PROBE = r"""
fail() {{ printf 'error=%s: %s\n' "$1" "$(printf '%s\n' "$2" | grep . | tail -n 1)"; }}
if ! out=$(mkdir -p -- {wd} 2>&1); then fail workdir "$out"
elif ! test -w {wd} || ! test -x {wd}; then fail workdir "not writable"
elif ! out=$(df -Pk -- {wd} 2>&1); then fail disk "$out"
else echo "disk_free_gb=$(printf '%s\n' "$out" | awk 'NR==2 {{printf "%.1f", $4/1048576}}')"
fi
if out=$({py} -c 'import sys; print(sys.version.split()[0])' 2>&1); then echo "python=$out"
else fail python "$out"; fi
if command -v nvidia-smi >/dev/null; then
  if out=$(nvidia-smi --query-gpu=index,name,memory.total,memory.used \
           --format=csv,noheader,nounits 2>&1)
  then printf '%s\n' "$out" | grep . | sed 's/^/gpu=/'; else fail nvidia-smi "$out"; fi
fi
if command -v {venv_py} >/dev/null && test -f {wd}/src/orchestrator/executors/process.py
then echo provisioned=yes; else echo provisioned=no; fi
"""


def probe_host(conn: Connection, host: Host) -> dict:
    """What the host has: python version, free disk, GPUs (index, name, memory).
    ProbeFailed names each step that failed (the setup line, the workdir, the interpreter,
    nvidia-smi)."""
    c = host.config
    started = time.monotonic()
    code, out = conn.run(host.shell(_PROBE.format(
        py=shell_path(c.python), wd=shell_path(c.workdir), venv_py=shell_path(host.python))),
        timeout_s=60)
    info = parse_probe(out)
    info["rtt_ms"] = round((time.monotonic() - started) * 1000)
    if code == SETUP_FAILED:
        info["errors"] = [f"setup: {_last_line(out)}"]
    elif code:
        info["errors"] = [f"probe: exited {code}: {_last_line(out)}"]
    if info.get("errors"):
        what = {"workdir": f"workdir {c.workdir}", "python": f"python {c.python}",
                "disk": f"free disk of {c.workdir}"}
        raise ProbeFailed(f"{host.name}: " + "; ".join(
            f"{what.get(step, step)}: {why}"
            for step, _, why in (e.partition(": ") for e in info["errors"])))
    return info


def _last_line(out: str) -> str:
    last = [ln.strip() for ln in out.splitlines() if ln.strip()]
    return last[-1] if last else "no output"


def parse_probe(out: str) -> dict:
    info: dict = {"gpus": []}
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key == "gpu":
            idx, name, total, used = (v.strip() for v in value.split(","))
            info["gpus"].append(dict(index=idx, name=name, memory_total_mib=int(total),
                                     memory_used_mib=int(used)))
        elif key == "error":
            info.setdefault("errors", []).append(value.strip())
        elif key in ("python", "disk_free_gb", "provisioned"):
            info[key] = value.strip()
    return info


def slots_of(host: Host, info: dict | None) -> list[str]:
    """GPU indices the host offers: configured, else from its last check; [] = one CPU slot."""
    if host.config.gpus is not None:
        return list(host.config.gpus)
    return [g["index"] for g in (info or {}).get("gpus", [])]


# --- provision ---------------------------------------------------------------------------

def tracked_files(root: Path = ROOT) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True)
    return [f for f in out.stdout.decode().split("\0") if f and (root / f).is_file()]


def revision(root: Path = ROOT) -> str:
    """The commit being synced, "+dirty" when tracked files differ from it."""
    git = ["git", "-C", str(root)]
    sha = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "diff", "--quiet", "HEAD"], capture_output=True)
    return sha.stdout.strip() + ("+dirty" if dirty.returncode else "")


def project_tarball(root: Path = ROOT) -> bytes:
    """The tracked files as they are in the working tree, and a REVISION file naming the
    commit, since the host gets no .git."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for rel in tracked_files(root):
            tar.add(root / rel, arcname=rel)
        rev = (revision(root) + "\n").encode()
        info = tarfile.TarInfo("REVISION")
        info.size, info.mtime = len(rev), int(time.time())
        tar.addfile(info, io.BytesIO(rev))
    return buf.getvalue()


def engine_requirements(root: Path = ROOT) -> list[str]:
    """What a worker needs: the `engine` extra of pyproject.toml. The project itself is not
    installed; jobs run from its directory."""
    meta = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    return list(meta["optional-dependencies"]["engine"])


@dataclass
class Provisioned:
    seconds: dict[str, float]  # step -> wall time
    self_check: str


def provision(conn: Connection, host: Host, *, root: Path = ROOT, log=print) -> Provisioned:
    """Make the host ready to run jobs; raises SSHError naming the step that failed."""
    c = host.config
    wd = c.workdir.rstrip("/") or "/"
    times: dict[str, float] = {}

    def step(name: str, command: str, timeout_s: float) -> str:
        log(f"{host.name}: {name}")
        t = time.monotonic()
        try:
            code, out = conn.run(host.shell(command), timeout_s=timeout_s)
            if code:
                last = [ln for ln in out.splitlines() if ln.strip()]
                raise SSHError(f"{host.name}: {name} failed (exit {code}): "
                               f"{last[-1].strip() if last else 'no output'}")
            return out
        finally:
            times[name] = round(time.monotonic() - t, 2)

    t = time.monotonic()
    log(f"{host.name}: sync project")
    wd_abs = conn.abspath(wd)
    conn.check(f"mkdir -p {shlex.quote(wd_abs)}")
    conn.put_bytes(f"{wd_abs}/src.tar.gz", project_tarball(root))
    # A fresh tree each time, swapped in whole: files deleted here vanish there too.
    conn.check(f"cd {shlex.quote(wd_abs)} && rm -rf src.new && mkdir src.new && "
               f"tar -xzf src.tar.gz -C src.new && rm -rf src && mv src.new src && "
               f"rm src.tar.gz")
    times["sync"] = round(time.monotonic() - t, 2)
    if c.venv:
        venv = shell_path(f"{wd}/venv")
        step("create venv", f"test -x {venv}/bin/python || {shell_path(c.python)} -m venv "
                            f"--system-site-packages {venv}", 300)
    reqs = " ".join(shlex.quote(r) for r in engine_requirements(root))
    python = shell_path(host.python)
    # Requirements already met (a conda torch) are not downloaded again.
    step("install", f"{python} -m pip install -q --disable-pip-version-check "
                    f"{shell_words(c.pip_args)} {reqs}", 3600)
    out = step("self-check", f"cd {shell_path(host.src)} && {python} -m engine.bench "
                             f"--self-check", 900)
    line = next((ln for ln in reversed(out.splitlines()) if ln.startswith("self-check")), "")
    return Provisioned(times, line.removeprefix("self-check ok: "))


def summary(info: dict) -> str:
    gpus = info.get("gpus") or []
    g = ", ".join(f"{x['index']}: {x['name']} {x['memory_total_mib']} MiB" for x in gpus)
    return (f"python {info.get('python', '?')}, {info.get('disk_free_gb', '?')} GB free, "
            f"{g or 'no GPU'}, provisioned: {info.get('provisioned', '?')}, "
            f"{info.get('rtt_ms', '?')} ms")



# --- join (ray mode) ---------------------------------------------------------------------

def join(conn: Connection, host: Host, head: str, gpus: list[str], ray_args: str = "") -> str:
    """`ray start` on the host as a worker of the cluster at `head`, labelled with one
    resource per slot. Jobs import the synced project, hence PYTHONPATH."""
    src = conn.abspath(host.src)
    resources = json.dumps(slot_resources(host.name, gpus), separators=(",", ":"))
    command = (f"cd {shlex.quote(src)} && PYTHONPATH={shlex.quote(src)} RAY_USAGE_STATS_ENABLED=0 "
               f"{shell_path(host.python)} -m ray.scripts.scripts start --address "
               f"{shlex.quote(head)} --num-gpus {len(gpus)} --resources "
               f"{shlex.quote(resources)} --disable-usage-stats {shell_words(ray_args)}")
    code, out = conn.run(host.shell(command), timeout_s=180)
    if code:
        last = [ln for ln in out.splitlines() if ln.strip()]
        raise SSHError(f"{host.name}: ray start failed (exit {code}): "
                       f"{last[-1].strip() if last else 'no output'}")
    return resources
