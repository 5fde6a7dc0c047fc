"""Profile the first prefill step and the first decode step of a workload on an engine
that has finished its timed run (engine/kernel_profile.py), at the engine's batch: the
workload's first max_num_seqs prompts are admitted as the scheduler admits them, steps run
one at a time until the first decode step (every admitted sequence decoding), and each
profiled step is launched again and again before it advances, the same step each time (its
K/V slots rewritten with the same values). Then every sequence is dropped. It starts
from LLM.reset (the prefix cache empty, as the timed run found it); a generate after it
resets the engine again (its sampler's draws)."""

from __future__ import annotations

from engine.kernel_profile import profile_step
from engine.nano.llm import LLM
from engine.nano.sampling import SamplingParams
from engine.nano.scheduler import Batch
from engine.nano.sequence import Sequence
from engine.result import StepProfile


def profile_first_steps(llm: LLM, prompts: list[list[int]],
                        params: list[SamplingParams]) -> list[StepProfile]:
    sched, runner = llm.scheduler, llm.runner
    llm.reset()  # an empty prefix cache: the timed run's prompts would hit it
    n = min(llm.config.max_num_seqs, len(prompts))
    for p, sp in zip(prompts[:n], params[:n], strict=True):
        seq = Sequence(p, sp, llm.config.block_size)
        sched.validate(seq)
        sched.add(seq)
    out: list[StepProfile] = []
    try:
        while not sched.is_finished() and len(out) < 2:
            batch = sched.schedule()
            kind = "prefill" if batch.is_prefill else "decode"
            if all(p.kind != kind for p in out):
                out.append(_profile(llm, batch, kind))
            tokens = runner.launch(batch)
            sched.advance(batch)
            llm._complete(batch, tokens)
    finally:
        sched.abort()
    return out


def _profile(llm: LLM, batch: Batch, kind: str) -> StepProfile:
    runner = llm.runner
    context = sum(s.num_computed_tokens + n
                  for s, n in zip(batch.seqs, batch.num_new_tokens, strict=True))
    return profile_step(lambda: runner.launch(batch).tolist(), runner.device, kind=kind,
                        seqs=len(batch.seqs), tokens=batch.num_tokens, context_tokens=context,
                        graph=runner.replays_graph(batch))
