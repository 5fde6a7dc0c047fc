import json

import pytest

from engine.result import BenchResult


def make(**kw) -> BenchResult:
    base = dict(
        engine="hf",
        variant="hf-sdpa",
        model="random:tiny:s0",
        workload="standard",
        workload_fingerprint="0123456789abcdef",
        num_seqs=4,
        max_num_seqs=2,
        gpu_memory_utilization=0.9,
        prompt_tokens=100,
        requested_output_tokens=40,
        output_tokens=40,
        elapsed_s=2.0,
    )
    return BenchResult(**(base | kw))


def test_derived_figures() -> None:
    r = make(load_s=1.0, warmup_s=0.5, capture_s=0.25, prefill_s=0.5, decode_s=1.0)
    assert r.output_tok_s == 20.0
    assert r.total_tok_s == 70.0
    assert r.prefill_tok_s == 200.0
    assert r.decode_tok_s == 40.0
    assert r.start_s == 1.75
    assert make().prefill_tok_s is None and make().decode_tok_s is None


def test_json_round_trip() -> None:
    r = make(
        kv_blocks=10,
        block_size=256,
        kv_tokens=2560,
        peak_memory_bytes=123,
        device="cuda",
        options={"dtype": "auto"},
        env={"gpu": {"name": "H100"}},
    )
    d = json.loads(r.to_json())
    assert d["output_tok_s"] == pytest.approx(20.0)
    # Derived figures in the JSON are ignored on the way back in.
    assert BenchResult.from_dict(d) == r


def test_gpu_name_is_envinfo_s() -> None:
    assert make(env={"gpu": {"name": "H100"}}).gpu_name == "H100"
    assert make().gpu_name is None and make(env={"gpu": None}).gpu_name is None
