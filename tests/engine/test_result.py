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


def test_latency_figures_round_trip_and_an_old_record_has_none() -> None:
    from dataclasses import asdict

    from engine.latency import Latency

    figures = Latency(ttft_p50_s=0.05, ttft_p90_s=0.09, ttft_p99_s=0.1, tpot_p50_s=0.01,
                      tpot_p90_s=0.02, tpot_p99_s=None)
    r = make(**asdict(figures))
    d = json.loads(r.to_json())
    assert {k: d[k] for k in asdict(figures)} == asdict(figures)
    assert BenchResult.from_dict(d) == r
    old = make().to_dict()
    for k in asdict(figures):
        del old[k]
    assert all(getattr(BenchResult.from_dict(old), k) is None for k in asdict(figures))


def test_gpu_name_is_envinfo_s() -> None:
    assert make(env={"gpu": {"name": "H100"}}).gpu_name == "H100"
    assert make().gpu_name is None and make(env={"gpu": None}).gpu_name is None


def test_conditions_round_trip_and_an_old_record_reads_as_not_recorded() -> None:
    from engine.result import Conditions

    c = Conditions(nice=0, nice_asked=0, cpu_affinity=[0, 1], cpu_count=2, load_before=0.5,
                   load_after=1.2, gpu_processes_before=[], gpu_processes_after=[],
                   cpu_s=3.0, wall_s=4.0)
    r = make(conditions=c)
    d = json.loads(r.to_json())
    assert d["conditions"]["cpu_affinity"] == [0, 1] and d["disturbed"] == []
    assert BenchResult.from_dict(d) == r
    # Written before conditions existed, or by a later version with more of them.
    old = make().to_dict()
    del old["conditions"], old["disturbed"]
    assert BenchResult.from_dict(old).conditions == Conditions()
    assert BenchResult.from_dict(old).disturbed == []
    d["conditions"]["future_field"] = 1
    assert BenchResult.from_dict(d) == r


def test_disturbed_names_each_reason() -> None:
    from engine.result import Conditions

    quiet = Conditions(nice=0, nice_asked=0, cpu_count=4, load_before=3.9, load_after=7.0,
                       cpu_s=12.0, wall_s=4.0, gpu_processes_before=[], gpu_processes_after=[])
    # After the job, 7.0 of load less its own 3 busy CPUs is 4.0: not above 4 CPUs.
    assert make(conditions=quiet).disturbed == []
    busy = Conditions(nice=15, nice_asked=0, cpu_count=4, load_before=4.5, load_after=7.5,
                      cpu_s=12.0, wall_s=4.0, gpu_processes_before=[{"pid": 7}],
                      gpu_processes_after=[{"pid": 8, "used_bytes": None}, {"pid": 9}])
    assert make(conditions=busy).disturbed == [
        "ran at nice 15, not 0",
        "load 4.5 on 4 CPUs before",
        "load 7.5 on 4 CPUs after (the job's own 3.0)",
        "1 other GPU process(es) before (pid 7)",
        "2 other GPU process(es) after (pid 8, 9)",
    ]


def profiled(**kw) -> BenchResult:
    """A result with a roofline (floor 0.5 s of its 2 s) and two step profiles."""
    from engine.result import Roofline, StepProfile

    line = Roofline(card="H200", copy_bytes_per_s=4e12, matmul_flops_per_s=8e14,
                    prefill_bytes=1e9, prefill_flops=8e13, decode_bytes=1.6e12,
                    decode_flops=1e13, prefill_floor_s=0.1, decode_floor_s=0.4)
    steps = [StepProfile("prefill", 4, 100, 100, "cuda", 0.01, 0.012,
                         {"gemm": 0.008, "attention": 0.002}, {"nvjet": 0.008}),
             StepProfile("decode", 2, 2, 60, "cuda", 0.002, 0.003,
                         {"gemm": 0.0015, "attention": 0.0005}, {"_decode_split_kernel": 5e-4},
                         graph=True)]
    return make(roofline=line, step_profiles=steps, prefill_s=0.5, decode_s=1.25, **kw)


def test_roofline_and_step_profiles_round_trip() -> None:
    r = profiled()
    d = json.loads(r.to_json())
    assert d["floor_s"] == pytest.approx(0.5) and d["percent_of_floor"] == pytest.approx(25.0)
    assert d["between_steps_s"] == pytest.approx(0.25)
    back = BenchResult.from_dict(d)
    assert back == r and back.step_profiles[1].graph
    assert back.step_profiles[0].host_gap_s == pytest.approx(0.002)
    old = BenchResult.from_dict(json.loads(make().to_json()))
    assert old.roofline is None and old.percent_of_floor is None and old.step_profiles is None
