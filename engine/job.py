"""BenchJob: what the coordinator hands a worker. Plain data, JSON on the wire."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field

from engine.workload import WorkloadSpec

# A job's gpu_memory_utilization where the sweep (or the command line) does not set one.
DEFAULT_GPU_MEMORY_UTILIZATION = 0.9

# The line a job process writes to its log as each of its jobs' timed part begins: where
# one job's output ends and the next one's begins, for the runner that splits the log.
_JOB_START = "[benchsweep] job "
JOB_START_RE = re.compile(r"^\[benchsweep\] job (\d+) of \d+: ", re.MULTILINE)


def job_start_line(index: int, total: int, what: str) -> str:
    return f"{_JOB_START}{index + 1} of {total}: {what}"


def may_start_a_job(partial_line: str) -> bool:
    """Whether a line still being written may turn out to be a job's start line."""
    return partial_line.startswith(_JOB_START[:len(partial_line)]) and \
        not JOB_START_RE.match(partial_line)


@dataclass(frozen=True)
class ModelRef:
    """A checkpoint: a local HF-format directory, or a named architecture with random
    weights that the worker writes once into its cache (engine/checkpoints.py)."""

    path: str | None = None
    arch: str | None = None
    seed: int = 0

    @property
    def label(self) -> str:
        return self.path if self.path else f"random:{self.arch}:s{self.seed}"


@dataclass(frozen=True)
class BenchJob:
    engine: str  # kind, a key of engine.variants.KINDS
    variant: str  # the sweep's name for this engine configuration
    model: ModelRef
    workload: WorkloadSpec
    max_num_seqs: int
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION
    max_model_len: int | None = None
    options: dict = field(default_factory=dict)  # engine options, validated by variants.py
    repeat: int = 0
    # "kernels": after the timed run, profile one prefill and one decode step of the
    # workload (orchestrator/spec.py: Profile; not part of the job's key).
    profile: str = "none"

    def to_json(self) -> str:
        d = asdict(self)
        d["workload"] = self.workload.to_dict()
        return json.dumps(d, sort_keys=True)

    def with_profile(self, profile: str) -> BenchJob:
        return BenchJob(**{**self.__dict__, "profile": profile})

    @classmethod
    def from_json(cls, text: str) -> BenchJob:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, d: dict) -> BenchJob:
        d = dict(d, model=ModelRef(**d["model"]), workload=WorkloadSpec.from_dict(d["workload"]))
        return cls(**d)

    @property
    def configuration(self) -> str:
        """The job as JSON but for its repeat: jobs that share it measure the same thing."""
        d = json.loads(self.to_json())
        del d["repeat"]
        return json.dumps(d, sort_keys=True)
