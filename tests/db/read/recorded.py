"""A sweep recorded through the coordinator's own path (orchestrator.run.record_jobs, as
`orchestrate sweep` records it) into a real database, its jobs finished with chosen
throughputs through the Store's write API: what the readers see after a real run."""

from __future__ import annotations

import textwrap

from db.store import Store
from orchestrator.run import record_jobs
from orchestrator.spec import parse
from tests.engine.test_result import make

MATRIX = """\
    name: {name}
    model: {{arch: tiny}}
    workload: {{num_seqs: 4, input_len: [8, 24], output_len: [2, 6]}}
    variants:
    {variants}
    matrix: {matrix}
    repeats: {repeats}
    baseline: {baseline}
    """


def sweep_text(name="s", variants="  base: {kind: hf}\n  fast: {kind: hf, options: "
               "{attn_implementation: eager}}", matrix="{max_num_seqs: [4]}", repeats=3,
               baseline="base") -> str:
    return textwrap.dedent(MATRIX).format(name=name, variants=variants, matrix=matrix,
                                          repeats=repeats, baseline=baseline)


def record(store: Store, text: str) -> list:
    """Record the sweep file `text` as `orchestrate sweep` does; its planned jobs."""
    spec = parse(text)
    record_jobs(spec, store)
    return spec.expand()


def finish(store: Store, key: str, tok_s: float, *, gpu: str = "H100", **result) -> None:
    """Run one job of the last recorded sweep to a result of `tok_s` output tok/s (more
    BenchResult fields in `result`)."""
    from sqlalchemy import select

    from db.models import Job

    with store.session() as s:
        job_id = s.scalar(select(Job.id).where(Job.key == key))
    at = store.start_attempt(job_id, "h", "0")
    store.finish_attempt(at, "succeeded", job_state="succeeded", result=make(
        output_tokens=100, prompt_tokens=100, elapsed_s=100 / tok_s,
        env={"gpu": {"name": gpu}}, **result))


def run_all(store: Store, planned: list, tok_s: dict) -> None:
    """Finish every planned job; tok_s maps (variant, repeat) or a variant to its figure."""
    for p in planned:
        v = tok_s.get((p.job.variant, p.job.max_model_len, p.job.repeat),
                      tok_s.get((p.job.variant, p.job.repeat), tok_s.get(p.job.variant)))
        finish(store, p.key, v)
