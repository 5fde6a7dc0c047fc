import contextlib
import textwrap

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.spec import SpecError, load, parse

BASE = textwrap.dedent("""\
    name: t
    model:
      arch: tiny
    workload:
      num_seqs: 4
      input_len: [8, 16]
      output_len: [4, 8]
    variants:
      hf:
        kind: hf
      hf-eager:
        kind: hf
        options:
          attn_implementation: eager
    matrix:
      variant: [hf, hf-eager]
      max_num_seqs: [2, 4]
    repeats: 2
    """)


def with_changes(**changes) -> str:
    d = yaml.safe_load(BASE)
    d.update(changes)
    return yaml.safe_dump(d, sort_keys=False)


def test_demo_and_gpu_sweeps_parse():
    assert len(load("sweeps/demo.yaml").expand()) == 8


def test_expansion_is_deterministic_and_repeat_major():
    a, b = parse(BASE).expand(), parse(BASE).expand()
    assert [p.key for p in a] == [p.key for p in b]
    assert len(a) == 8 and len({p.key for p in a}) == 8
    assert [p.job.repeat for p in a] == [0] * 4 + [1] * 4
    assert [p.ordinal for p in a] == list(range(8))


def test_key_ignores_labels_and_spelled_out_defaults():
    keys = {p.key for p in parse(BASE).expand()}
    renamed = BASE.replace("hf-eager", "reference-eager")
    assert {p.key for p in parse(renamed).expand()} == keys
    explicit = BASE.replace("kind: hf\n  hf-eager",
                            "kind: hf\n    options: {attn_implementation: sdpa}\n  hf-eager")
    assert explicit != BASE
    assert {p.key for p in parse(explicit).expand()} == keys


def test_key_changes_with_what_changes_the_result():
    keys = {p.key for p in parse(BASE).expand()}
    for text in (BASE.replace("num_seqs: 4", "num_seqs: 5"),
                 BASE.replace("arch: tiny", "arch: tiny-qwen3"),
                 BASE.replace("max_num_seqs: [2, 4]", "max_num_seqs: [3, 5]")):
        assert not keys & {p.key for p in parse(text).expand()}


def test_exclude_include_and_option_axes():
    text = BASE + textwrap.dedent("""\
        exclude:
          - {variant: hf-eager, max_num_seqs: 4}
        include:
          - {variant: hf, max_num_seqs: 16, gpu_memory_utilization: 0.5}
        """)
    jobs = [p.job for p in parse(text).expand() if p.job.repeat == 0]
    combos = [(j.variant, j.max_num_seqs, j.gpu_memory_utilization) for j in jobs]
    assert combos == [("hf", 2, 0.9), ("hf", 4, 0.9), ("hf-eager", 2, 0.9), ("hf", 16, 0.5)]
    axis = BASE.replace("max_num_seqs: [2, 4]", "max_num_seqs: [2]\n  dtype: [auto, bfloat16]")
    opts = [p.job.options for p in parse(axis).expand() if p.job.repeat == 0]
    assert opts == [{}, {"dtype": "bfloat16"}, {"attn_implementation": "eager"},
                    {"attn_implementation": "eager", "dtype": "bfloat16"}]


def test_reuse_groups_the_repeats_of_a_configuration_without_changing_keys():
    fresh = parse(BASE).expand()
    assert all(p.group is None for p in fresh)
    shared = parse(BASE + "reuse: repeats\n").expand()
    assert [p.key for p in shared] == [p.key for p in fresh]  # the same measurement
    groups: dict = {}
    for p in shared:
        groups.setdefault(p.group, []).append(p)
    assert len(groups) == 4 and None not in groups
    for jobs in groups.values():
        assert [p.job.repeat for p in jobs] == [0, 1]
        assert len({p.job.to_json().replace('"repeat": 1', '"repeat": 0') for p in jobs}) == 1
    # A variant's own choice overrides the sweep's, either way.
    one = BASE.replace("attn_implementation: eager", "attn_implementation: eager\n    "
                                                     "reuse: repeats")
    assert {p.job.variant for p in parse(one).expand() if p.group} == {"hf-eager"}
    off = one.replace("reuse: repeats", "reuse: none") + "reuse: repeats\n"
    assert {p.job.variant for p in parse(off).expand() if p.group} == {"hf"}


def test_profile_reaches_the_job_without_changing_keys():
    plain = parse(BASE).expand()
    assert {p.profile for p in plain} == {"none"} and {p.job.profile for p in plain} == {"none"}
    profiled = parse(BASE + "profile: kernels\n").expand()
    assert [p.key for p in profiled] == [p.key for p in plain]  # the same measurement
    assert {(p.profile, p.job.profile) for p in profiled} == {("kernels", "kernels")}
    # A variant's own choice overrides the sweep's.
    one = BASE.replace("attn_implementation: eager", "attn_implementation: eager\n    "
                                                     "profile: kernels")
    assert {p.job.variant for p in parse(one).expand() if p.profile == "kernels"} == {"hf-eager"}


@pytest.mark.parametrize("old,new,where", [
    ("repeats: 2", "repeats: 2\nbogus: 1", "19: bogus: unknown field"),
    ("max_num_seqs: [2, 4]", "max_num_seqs: [2, -4]", "17: matrix.max_num_seqs[1]: must be a "
                                                       "positive integer"),
    ("variant: [hf, hf-eager]", "variant: [hf, nope]", "16: matrix.variant[1]: unknown variant"),
    ("kind: hf\n  hf-eager", "kind: vllmx\n  hf-eager", "10: variants.hf.kind: unknown "
                                                                 "engine kind 'vllmx'"),
    ("attn_implementation: eager", "attn_implementation: flash", "13: variants.hf-eager.options: "
                                                                  "option 'attn_implementation'"),
    ("attn_implementation: eager", "attn_implementation: sdpa", "11: variants.hf-eager: the "
                                                                "same engine configuration"),
    ("arch: tiny", "arch: gpt5", "3: model.arch: unknown arch 'gpt5'"),
    ("input_len: [8, 16]", "input_len: [16, 8]", "6: workload.input_len: must be [min, max]"),
    ("name: t", "name: 'bad name'", "1: name: String should match pattern"),
    ("  max_num_seqs: [2, 4]\n", "", ": matrix.max_num_seqs: required axis missing"),
    ("[hf, hf-eager]", "[hf, hf-eager", "invalid YAML"),
    ("repeats: 2", "repeats: 2\nreuse: always", "19: reuse: Input should be 'none' or "
                                                 "'repeats'"),
    ("attn_implementation: eager", "attn_implementation: eager\n    reuse: [repeats]",
     "15: variants.hf-eager.reuse: Input should be 'none' or 'repeats'"),
    ("repeats: 2", "repeats: 2\nprofile: cuda", "19: profile: Input should be 'none' or "
                                                "'kernels'"),
])
def test_bad_files_name_field_and_line(old, new, where):
    text = BASE.replace(old, new)
    assert text != BASE
    with pytest.raises(SpecError) as e:
        parse(text, "s.yaml")
    assert where in str(e.value), str(e.value)
    assert str(e.value).startswith("s.yaml")
    assert "\n" not in str(e.value)


def test_unreadable_file(tmp_path):
    with pytest.raises(SpecError, match="cannot read"):
        load(tmp_path / "missing.yaml")


KEYS = ["name", "model", "workload", "variants", "matrix", "exclude", "include", "repeats",
        "timeout_s", "retries", "baseline", "executor", "kind", "options", "arch", "path",
        "variant", "max_num_seqs", "gpu_memory_utilization", "num_seqs", "input_len",
        "attn_implementation", "hf", "dtype", "reuse", "profile"]
leaves = st.one_of(st.none(), st.booleans(), st.integers(-5, 300), st.floats(allow_nan=True),
                   st.text(max_size=8), st.sampled_from(["hf", "tiny", "eager", "standard"]))
values = st.recursive(leaves, lambda c: st.one_of(
    st.lists(c, max_size=4), st.dictionaries(st.sampled_from(KEYS), c, max_size=5)),
    max_leaves=20)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KEYS), values, max_size=8), st.booleans())
def test_generated_files_never_crash(data, merge):
    doc = (yaml.safe_load(BASE) | data) if merge else data
    text = yaml.safe_dump(doc)
    try:
        spec = parse(text)
        spec.expand()
    except SpecError as e:
        assert "\n" not in str(e)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_never_crashes(text):
    with contextlib.suppress(SpecError):
        parse(text)
