import dataclasses
import json
import random
import shutil
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from engine.checkpoints import write_checkpoint
from engine.engines import hf
from engine.job import BenchJob, ModelRef
from engine.latency import summarize
from engine.workload import WorkloadSpec

EOS = 10239  # the tiny models' eos


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpt")
    return {arch: write_checkpoint(arch, root / arch) for arch in ("tiny", "tiny-qwen3")}


def job(max_num_seqs: int = 4, **options) -> BenchJob:
    return BenchJob(
        "hf", "hf", ModelRef(arch="tiny"), WorkloadSpec(), max_num_seqs, options=options
    )


def prompts(n: int, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randint(0, 10000) for _ in range(rng.randint(2, 30))] for _ in range(n)]


@pytest.mark.parametrize("arch", ["tiny", "tiny-qwen3"])
def test_batched_greedy_equals_one_by_one(arch: str, ckpts: dict[str, Path]) -> None:
    engine = hf.start(job(max_num_seqs=3), ckpts[arch])
    assert engine.device.type == "cpu" and engine.dtype == torch.float32
    assert engine.timings["load_s"] > 0
    ps, limits = prompts(5), [4, 7, 2, 6, 5]
    outs = engine.generate(ps, limits, temperature=0.0, ignore_eos=False)

    ref = AutoModelForCausalLM.from_pretrained(ckpts[arch], dtype=torch.float32)
    for p, n, out in zip(ps, limits, outs, strict=True):
        alone = ref.generate(
            torch.tensor([p]), max_new_tokens=n, do_sample=False, pad_token_id=EOS
        )[0, len(p) :].tolist()
        assert out == alone
    assert [len(o) for o in outs] == limits  # random weights: eos is (almost) never drawn

    stats = engine.stats()
    assert stats["prefill_s"] > 0 and stats["decode_s"] > 0
    assert not {"kv_blocks", "block_size", "kv_tokens"} & set(stats)
    assert engine.peak_memory_bytes() > 0
    engine.close()


def test_eos_stops_unless_ignored(ckpts: dict[str, Path], tmp_path: Path) -> None:
    engine = hf.start(job(), ckpts["tiny"])
    ps = prompts(3, seed=1)
    full = engine.generate(ps, [6] * 3, temperature=0.0, ignore_eos=True)
    assert [len(o) for o in full] == [6] * 3
    # A copy of the checkpoint whose eos is a token that the greedy run emits at position 2.
    eos = full[1][2]
    d = tmp_path / "eos"
    shutil.copytree(ckpts["tiny"], d)
    config = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps(config | {"eos_token_id": eos}))
    engine = hf.start(job(), d)
    stopped = engine.generate(ps, [6] * 3, temperature=0.0, ignore_eos=False)
    cut = full[1].index(eos)
    assert stopped[1] == full[1][: cut + 1]
    for got, want in zip(stopped, full, strict=True):
        assert got == (want[: want.index(eos) + 1] if eos in want else want)
    assert engine.generate(ps, [6] * 3, temperature=0.0, ignore_eos=True) == full


def test_request_timings_are_those_of_static_batches(ckpts: dict[str, Path]) -> None:
    """A batch's requests share its first step's end as their first token time and its end
    as their last; the next batch starts after it."""
    engine = hf.start(job(max_num_seqs=2), ckpts["tiny"])
    t = time.monotonic()
    outs = engine.generate(prompts(5, seed=3), [4, 1, 6, 3, 2], temperature=0.0,
                           ignore_eos=True)
    elapsed = time.monotonic() - t
    timings = engine.stats()["request_timings"]
    assert [r.output_tokens for r in timings] == [len(o) for o in outs] == [4, 1, 6, 3, 2]
    assert all(0 < r.first_token_s < r.last_token_s <= elapsed for r in timings)
    for a, b in ((0, 1), (2, 3)):
        assert timings[a] == dataclasses.replace(timings[b], output_tokens=timings[a].output_tokens)
    assert timings[1].last_token_s < timings[2].first_token_s
    assert timings[3].last_token_s < timings[4].first_token_s
    figures = summarize(timings)
    assert figures.ttft_p50_s == timings[2].first_token_s and figures.tpot_p50_s > 0
    engine.close()


def test_sampling_has_no_top_k(ckpts: dict[str, Path]) -> None:
    engine = hf.start(job(max_num_seqs=64), ckpts["tiny"])
    p = prompts(1, seed=2)[0]
    with torch.no_grad():
        logits = engine.model(torch.tensor([p])).logits[0, -1]
    top50 = set(logits.topk(50).indices.tolist())
    torch.manual_seed(0)
    # At temperature 100 the distribution is almost flat over the 10,240 tokens; with
    # transformers' default top_k=50 every draw would fall in the top 50.
    outs = engine.generate([p] * 64, [1] * 64, temperature=100.0, ignore_eos=True)
    drawn = {o[0] for o in outs}
    assert len(drawn) > 50 and drawn - top50


def test_options(ckpts: dict[str, Path]) -> None:
    engine = hf.start(job(dtype="bfloat16", attn_implementation="eager"), ckpts["tiny-qwen3"])
    assert engine.dtype == torch.bfloat16
    assert next(engine.model.parameters()).dtype == torch.bfloat16
    assert engine.model.config._attn_implementation == "eager"
    assert [len(o) for o in engine.generate(prompts(2), [3, 1], 0.6, True)] == [3, 1]
    with pytest.raises(ValueError, match="attn_implementation"):
        hf.start(job(attn_implementation="flash"), ckpts["tiny"])
