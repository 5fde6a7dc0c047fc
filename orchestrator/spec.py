"""SweepSpec: load and validate a sweep file, expand its matrix into jobs with stable keys.

A bad file raises SpecError carrying the YAML line of the offending field, so the CLI can
print one line: `sweeps/x.yaml:12: matrix.max_num_seqs[1]: must be a positive integer`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from engine import variants
from engine.archs import ARCHS
from engine.errors import UserError
from engine.job import DEFAULT_GPU_MEMORY_UTILIZATION, BenchJob, ModelRef
from engine.workload import (
    MAX_INPUT_LEN,
    MAX_NUM_SEQS,
    MAX_OUTPUT_LEN,
    RECIPES,
    WorkloadSpec,
    fingerprint,
)
from orchestrator import bounded_yaml

CORE_AXES = ("variant", "max_num_seqs", "gpu_memory_utilization", "max_model_len")
MAX_JOBS = 100_000  # the default limit; `orchestrate sweep --max-jobs` raises it
# What one job costs the coordinator before any job runs: expanding it (46 us, 2-core CI
# machine, 20,000-job sweep) and inserting its row (184 us: 5,433 jobs/s, BENCHMARKS.md).
JOB_SECONDS = 230e-6
MAX_OPTIONS_BYTES = 64 << 10  # a variant's options as JSON, aliases expanded
# none: each job a fresh process; repeats: the repeats of one configuration share one
# engine start (README, "What a repeat measures").
Reuse = Literal["none", "repeats"]
# none: the timed run only; kernels: each job also profiles one prefill and one decode step
# after its timed run (engine/kernel_profile.py). Not part of a job's key: the timed figures
# are the same with it or without (the steps are profiled after them), so results with and
# without a profile are repeats of one configuration; turning it on for a finished sweep
# takes --force. Like reuse, the sweep file as it reads now decides it at each submit.
Profile = Literal["none", "kernels"]


class SpecError(UserError, ValueError):
    """A sweep file that cannot run as written: one line naming the file, line and field."""

    exit_code = 2

    def __init__(self, message: str, loc: tuple = (), line: int | None = None,
                 source: str = "<sweep>"):
        self.message, self.loc, self.line, self.source = message, loc, line, source
        where = f"{source}:{line}" if line else source
        field = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in loc)
        super().__init__(f"{where}: {field.replace('.[', '[')}: {message}" if field
                         else f"{where}: {message}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSection(_Strict):
    path: str | None = None
    arch: str | None = None
    seed: int = 0

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, v: str | None) -> str | None:
        if v is not None and v not in ARCHS:
            raise ValueError(f"unknown arch {v!r}; known: {', '.join(sorted(ARCHS))}")
        return v

    def ref(self) -> ModelRef:
        if (self.path is None) == (self.arch is None):
            raise ValueError("give exactly one of path or arch")
        return ModelRef(path=self.path, arch=self.arch, seed=self.seed)


class WorkloadSection(_Strict):
    name: str = "standard"
    num_seqs: int = Field(256, gt=0, le=MAX_NUM_SEQS)
    input_len: tuple[int, int] = (100, 1024)
    output_len: tuple[int, int] = (100, 1024)
    temperature: float = Field(0.6, ge=0)
    ignore_eos: bool = True
    seed: int = 0

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in RECIPES:
            raise ValueError(f"unknown workload {v!r}; known: {', '.join(sorted(RECIPES))}")
        return v

    @field_validator("input_len", "output_len")
    @classmethod
    def _range(cls, v: tuple[int, int], info) -> tuple[int, int]:
        if not 1 <= v[0] <= v[1]:
            raise ValueError("must be [min, max] with 1 <= min <= max")
        most = {"input_len": MAX_INPUT_LEN, "output_len": MAX_OUTPUT_LEN}[info.field_name]
        if v[1] > most:
            raise ValueError(f"at most {most:,} tokens")
        return v


class VariantSection(_Strict):
    kind: str
    options: dict[str, Any] = {}
    timeout_s: float | None = Field(None, gt=0)  # overrides the sweep's per-job timeout
    reuse: Reuse | None = None  # overrides the sweep's
    profile: Profile | None = None  # overrides the sweep's

    @field_validator("kind")
    @classmethod
    def _known(cls, v: str) -> str:
        variants.kind(v)
        return v


class ExecutorSection(_Strict):
    kind: Literal["local", "ray", "ssh"] = "local"
    slots: int | None = Field(None, gt=0)  # local on CPU: concurrent jobs (default 1)
    address: str | None = None  # ray: the cluster
    hosts: str | None = None  # ssh: inventory file


class SweepFile(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=200)
    description: str = ""
    model: ModelSection | str
    workload: WorkloadSection = WorkloadSection()
    variants: dict[str, VariantSection] = Field(min_length=1)
    matrix: dict[str, list[Any]]
    exclude: list[dict[str, Any]] = []
    include: list[dict[str, Any]] = []
    repeats: int = Field(1, gt=0, le=1000)
    timeout_s: float = Field(1800, gt=0)
    retries: int = Field(0, ge=0, le=10)  # extra attempts after a failed or timed-out attempt
    baseline: str | None = None
    executor: ExecutorSection = ExecutorSection()
    reuse: Reuse = "none"
    profile: Profile = "none"


@dataclass(frozen=True)
class PlannedJob:
    key: str
    ordinal: int
    job: BenchJob
    timeout_s: float
    # Jobs with the same group run in one engine process (reuse: repeats): the key of
    # their configuration, which they share but for the repeat. None: a fresh process.
    group: str | None = None
    profile: Profile = "none"  # the job's BenchJob.profile as the sweep file reads now


@dataclass(frozen=True)
class SweepSpec:
    file: SweepFile
    text: str
    source: str

    @property
    def name(self) -> str:
        return self.file.name

    @property
    def model(self) -> ModelRef:
        m = self.file.model
        return ModelRef(path=m) if isinstance(m, str) else m.ref()

    @property
    def workload(self) -> WorkloadSpec:
        return WorkloadSpec(**self.file.workload.model_dump())

    @cached_property
    def fingerprint(self) -> str:
        return fingerprint(self.workload)

    @property
    def baseline(self) -> str:
        return self.file.baseline or next(iter(self.variant_names))

    @property
    def variant_names(self) -> list[str]:
        return list(self.file.matrix.get("variant", list(self.file.variants)))

    def expand(self) -> list[PlannedJob]:
        """Every job of the sweep, deterministic order: repeat-major, so an interrupted
        sweep has covered every configuration once before it repeats any."""
        f = self.file
        fingerprint = self.fingerprint
        model, workload = self.model, self.workload
        axes = {"variant": self.variant_names,
                "gpu_memory_utilization": [DEFAULT_GPU_MEMORY_UTILIZATION],
                "max_model_len": [None]} | f.matrix
        names = list(axes)
        points = [dict(zip(names, combo, strict=True))
                  for combo in itertools.product(*(axes[n] for n in names))]
        points = [p for p in points if not any(_matches(p, e) for e in f.exclude)]
        points += [{"gpu_memory_utilization": DEFAULT_GPU_MEMORY_UTILIZATION,
                    "max_model_len": None} | inc for inc in f.include]
        configs: dict[str, tuple[dict, BenchJob]] = {}
        for point in points:
            job = _job(f, point, model, workload)
            configs.setdefault(_key(job, fingerprint, None), (point, job))
        planned, ordinal = [], 0
        for repeat in range(f.repeats):
            for config, (_point, job) in configs.items():
                variant = f.variants[job.variant]
                profile = variant.profile or f.profile
                job = BenchJob(**{**job.__dict__, "repeat": repeat, "profile": profile})
                timeout = variant.timeout_s or f.timeout_s
                group = config if (variant.reuse or f.reuse) == "repeats" else None
                planned.append(PlannedJob(_key(job, fingerprint, repeat), ordinal, job, timeout,
                                          group, profile))
                ordinal += 1
        return planned


def _matches(point: dict, rule: dict) -> bool:
    return all(point.get(k) == v for k, v in rule.items())


def _job(f: SweepFile, point: dict, model: ModelRef, workload: WorkloadSpec) -> BenchJob:
    name = point["variant"]
    v = f.variants[name]
    kind = variants.kind(v.kind)
    options = dict(v.options)
    for axis, value in point.items():
        # An option axis applies to the variants whose engine has that option.
        if axis not in CORE_AXES and (axis in kind.options or kind.free_form):
            options[axis] = value
    return BenchJob(
        engine=v.kind, variant=name, model=model, workload=workload,
        max_num_seqs=point["max_num_seqs"],
        gpu_memory_utilization=float(point["gpu_memory_utilization"]),
        max_model_len=point.get("max_model_len"), options=kind.normalize(options),
    )


def _key(job: BenchJob, fingerprint: str, repeat: int | None) -> str:
    """A stable hash of everything that changes a job's result. The variant's *name* is
    a label and not part of it: renaming a variant does not rerun its jobs."""
    ident = {
        "engine": job.engine, "options": job.options, "model": job.model.label,
        "workload": fingerprint, "max_num_seqs": job.max_num_seqs,
        "gpu_memory_utilization": job.gpu_memory_utilization,
        "max_model_len": job.max_model_len, "repeat": repeat,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]


# --- loading and validation ----------------------------------------------------------------


def load(path: str | Path, *, max_jobs: int = MAX_JOBS) -> SweepSpec:
    path = Path(path)
    try:
        text = bounded_yaml.read_text(path)
    except OSError as e:
        raise SpecError(f"cannot read: {e.strerror}", source=str(path)) from None
    except bounded_yaml.BoundedYAMLError as e:
        raise SpecError(e.message, line=e.line, source=str(path)) from None
    return parse(text, str(path), max_jobs=max_jobs)


def parse(text: str, source: str = "<sweep>", *, max_jobs: int = MAX_JOBS) -> SweepSpec:
    try:
        node, data = bounded_yaml.load(text)
    except bounded_yaml.BoundedYAMLError as e:
        raise SpecError(e.message, line=e.line, source=source) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(f"invalid YAML: {problem}", line=mark.line + 1 if mark else None,
                        source=source) from None
    if not isinstance(data, dict):
        raise SpecError("a sweep file is a YAML mapping (name:, model:, variants:, matrix:, ...)",
                        line=1, source=source)
    try:
        f = SweepFile.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
        loc = tuple(p for p in loc if p not in ("ModelSection", "str"))
        raise SpecError(_pydantic_message(err), loc, _line(node, loc), source) from None
    try:
        _cross_validate(f, max_jobs)
        spec = SweepSpec(f, text, source)
        _ = spec.model
    except SpecError as e:
        raise SpecError(e.message, e.loc, _line(node, e.loc), source) from None
    except ValueError as e:
        raise SpecError(str(e), ("model",), _line(node, ("model",)), source) from None
    return spec


def _pydantic_message(err: dict) -> str:
    msg = err["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    if err["type"] == "extra_forbidden":
        return "unknown field"
    if err["type"] == "missing":
        return "required field missing"
    return msg


def _cross_validate(f: SweepFile, max_jobs: int) -> None:
    """What pydantic cannot see field by field: names that refer to each other, options
    that must exist on the variants' engines, the number of jobs."""
    seen: dict[str, str] = {}
    for name, v in f.variants.items():
        try:
            options = variants.kind(v.kind).normalize(v.options)
        except ValueError as e:
            raise SpecError(str(e), ("variants", name, "options")) from None
        same = seen.setdefault(json.dumps([v.kind, options], sort_keys=True), name)
        if same != name:
            raise SpecError(f"the same engine configuration as variant {same!r}",
                            ("variants", name))
    if "max_num_seqs" not in f.matrix:
        raise SpecError("required axis missing (a list of batch sizes)",
                        ("matrix", "max_num_seqs"))
    matrix_variants = f.matrix.get("variant", list(f.variants))
    for axis, values in f.matrix.items():
        if not values:
            raise SpecError("an axis needs at least one value", ("matrix", axis))
        for i, value in enumerate(values):
            _validate_axis_value(f, ("matrix", axis, i), axis, value)
        if axis not in CORE_AXES:
            kinds = {f.variants[v].kind for v in matrix_variants if v in f.variants}
            if not any(axis in variants.kind(k).options or variants.kind(k).free_form
                       for k in kinds):
                raise SpecError(f"not an axis nor an option of any engine in this sweep "
                                f"({', '.join(sorted(kinds))})", ("matrix", axis))
    for section in ("exclude", "include"):
        for i, rule in enumerate(getattr(f, section)):
            if not rule:
                raise SpecError("an empty rule", (section, i))
            for axis, value in rule.items():
                if axis not in f.matrix and axis not in CORE_AXES:
                    raise SpecError("not an axis of the matrix", (section, i, axis))
                _validate_axis_value(f, (section, i, axis), axis, value)
            if section == "include":
                for required in ("variant", "max_num_seqs"):
                    if required not in rule:
                        raise SpecError(f"an include names {required}", (section, i))
    if f.baseline is not None and f.baseline not in f.variants:
        raise SpecError(f"not a variant of this sweep ({', '.join(f.variants)})", ("baseline",))
    n = job_count_bound(f)
    if n > max_jobs:
        raise SpecError(f"expands to up to {n:,} jobs, more than {max_jobs:,}; expanding and "
                        f"recording them would take the coordinator about "
                        f"{_duration(n * JOB_SECONDS)} before the first job runs (--max-jobs "
                        f"raises the limit)", ("matrix",))
    for name, v in f.variants.items():
        size = len(json.dumps(v.options, default=str))
        if size > MAX_OPTIONS_BYTES:
            raise SpecError(f"{size:,} bytes of options, more than {MAX_OPTIONS_BYTES:,}",
                            ("variants", name, "options"))


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:,.0f} min"


def job_count_bound(f: SweepFile) -> int:
    """The jobs the matrix can expand to (before exclude rules), computed without
    expanding it."""
    axes = {"variant": f.matrix.get("variant", list(f.variants))} | f.matrix
    return (math.prod(len(v) for v in axes.values()) + len(f.include)) * f.repeats


def _validate_axis_value(f: SweepFile, loc: tuple, axis: str, value: Any) -> None:
    def positive_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v > 0

    if axis == "variant" and value not in f.variants:
        raise SpecError(f"unknown variant {value!r}; defined: {', '.join(f.variants)}", loc)
    if axis == "max_num_seqs" and not positive_int(value):
        raise SpecError(f"must be a positive integer, got {value!r}", loc)
    if axis == "max_model_len" and value is not None and not positive_int(value):
        raise SpecError(f"must be a positive integer or null, got {value!r}", loc)
    if axis == "gpu_memory_utilization" and not (
        isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 1
    ):
        raise SpecError(f"must be a number in (0, 1], got {value!r}", loc)
    if axis not in CORE_AXES:
        for v in f.variants.values():
            opt = variants.kind(v.kind).options.get(axis)
            if opt is not None:
                try:
                    opt.coerce(axis, value)
                except ValueError as e:
                    raise SpecError(str(e), loc) from None


def _line(node: yaml.Node | None, loc: tuple) -> int | None:
    """1-based line of the YAML node at `loc` (or of its nearest existing parent)."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == str(part):
                    child, line = v, k.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) \
                and part < len(node.value):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line
