from dataclasses import replace

import pytest

from engine.workload import MAX_TOKEN_ID, RECIPES, Workload, WorkloadSpec, build


@pytest.fixture(scope="module")
def standard() -> Workload:
    return build(WorkloadSpec())


def test_standard_counts(standard: Workload) -> None:
    # nano-vLLM bench.py's draw order at its defaults.
    assert len(standard.prompts) == 256
    assert standard.prompt_tokens == 142_827
    assert standard.requested_output_tokens == 133_966


def test_phase1_output_tokens() -> None:
    assert build(WorkloadSpec(name="phase1")).requested_output_tokens == 144_831


def test_draws_stay_in_range(standard: Workload) -> None:
    s = standard.spec
    assert all(s.input_len[0] <= len(p) <= s.input_len[1] for p in standard.prompts)
    assert all(s.output_len[0] <= n <= s.output_len[1] for n in standard.max_tokens)
    assert all(0 <= t <= MAX_TOKEN_ID for p in standard.prompts for t in p)


def test_deterministic(standard: Workload) -> None:
    again = build(WorkloadSpec())
    assert again.prompts == standard.prompts
    assert again.max_tokens == standard.max_tokens
    assert again.fingerprint == standard.fingerprint


@pytest.mark.parametrize(
    "change",
    [
        {"seed": 1},
        {"name": "phase1"},
        {"num_seqs": 255},
        {"input_len": (100, 1023)},
        {"output_len": (100, 1023)},
        {"temperature": 0.0},
        {"ignore_eos": False},
    ],
)
def test_fingerprint_changes_with_spec(standard: Workload, change: dict) -> None:
    assert build(replace(standard.spec, **change)).fingerprint != standard.fingerprint


def test_fingerprint_changes_with_one_token_or_limit(standard: Workload) -> None:
    prompts = [list(p) for p in standard.prompts]
    prompts[-1][-1] = (prompts[-1][-1] + 1) % MAX_TOKEN_ID
    assert Workload(standard.spec, prompts, standard.max_tokens).fingerprint != (
        standard.fingerprint
    )
    limits = list(standard.max_tokens)
    limits[0] += 1
    assert Workload(standard.spec, standard.prompts, limits).fingerprint != standard.fingerprint


def test_unknown_recipe() -> None:
    with pytest.raises(ValueError, match="unknown workload 'nope'"):
        build(WorkloadSpec(name="nope"))
    assert set(RECIPES) >= {"standard", "phase1"}


def test_spec_round_trip() -> None:
    spec = WorkloadSpec(name="phase1", num_seqs=3, input_len=(1, 2), seed=7)
    assert WorkloadSpec.from_dict(spec.to_dict()) == spec
