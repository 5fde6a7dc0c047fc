"""Sweep files and inventories are read within bounds: each refusal is one line with the
file and line, before anything large is built."""

import time

import pytest

from engine.workload import TOKEN_FINGERPRINT_MAX, Workload, WorkloadSpec, build, fingerprint
from orchestrator.bounded_yaml import MAX_BYTES, MAX_NODES
from orchestrator.hosts import Inventory, InventoryError
from orchestrator.spec import SpecError, load, parse
from tests.orchestrator.test_spec import BASE


def alias_bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x","x"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_before_it_grows():
    text = BASE.replace("variants:", alias_bomb() + "variants:")
    t = time.monotonic()
    with pytest.raises(SpecError, match=f"more than {MAX_NODES:,} values"):
        parse(text, "bomb.yaml")
    assert time.monotonic() - t < 5


def test_deep_nesting_names_the_line():
    with pytest.raises(SpecError, match=r"deep.yaml:2: nested deeper than 32 levels"):
        parse("name: t\nx: " + "[" * 100_000 + "]" * 100_000 + "\n", "deep.yaml")


def test_duplicate_keys_name_both_lines():
    text = BASE.replace("  hf-eager:\n", "  hf:\n    kind: hf\n  hf-eager:\n")
    with pytest.raises(SpecError, match=r"t.yaml:11: duplicate key 'hf' \(lines 9 and 11\)"):
        parse(text, "t.yaml")


def test_oversized_and_non_utf8_files(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text(BASE + "#" * MAX_BYTES)
    with pytest.raises(SpecError, match="big.yaml: larger than 1024 KiB"):
        load(big)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(BASE.encode() + b"description: caf\xe9\n")
    with pytest.raises(SpecError, match=r"latin.yaml:19: not UTF-8 text \(byte 278\)"):
        load(latin)


def test_job_count_is_bounded_before_expansion():
    seqs = ", ".join(str(i) for i in range(1, 3001))
    utils = ", ".join(f"0.{i:04d}" for i in range(1, 3001))
    text = BASE.replace("max_num_seqs: [2, 4]", f"max_num_seqs: [{seqs}]\n  "
                                                f"gpu_memory_utilization: [{utils}]")
    t = time.monotonic()
    with pytest.raises(SpecError, match=r"matrix: expands to up to 36,000,000 jobs, more than "
                                        r"100,000; .* about \d+ min .*--max-jobs"):
        parse(text)
    assert time.monotonic() - t < 10
    small = BASE.replace("max_num_seqs: [2, 4]", "max_num_seqs: [2, 4, 8]")
    with pytest.raises(SpecError, match="up to 12 jobs, more than 10"):
        parse(small, max_jobs=10)
    assert len(parse(small, max_jobs=12).expand()) == 12


def test_workload_sizes_are_bounded():
    for old, new in (("num_seqs: 4", "num_seqs: 100000000"),
                     ("input_len: [8, 16]", "input_len: [1, 2097152]"),
                     ("output_len: [4, 8]", "output_len: [1, 2097152]")):
        with pytest.raises(SpecError, match=f"workload.{old.split(':')[0]}"):
            parse(BASE.replace(old, new))


def test_large_workload_fingerprint_comes_from_its_recipe():
    big = WorkloadSpec(num_seqs=100_000, input_len=(100, 1024))
    assert big.num_seqs * big.input_len[1] > TOKEN_FINGERPRINT_MAX
    t = time.monotonic()
    fp = fingerprint(big)
    assert time.monotonic() - t < 0.1
    # What a worker that built it reports (its token ids are not needed for this).
    assert Workload(big, [], []).fingerprint == fp
    assert fingerprint(WorkloadSpec(num_seqs=100_000, input_len=(100, 1024), seed=1)) != fp
    small = WorkloadSpec()  # the standard workload keeps the token-id fingerprint
    assert fingerprint(small) == build(small).fingerprint


def test_inventory_is_read_within_the_same_bounds(tmp_path):
    inv = tmp_path / "hosts.yaml"
    inv.write_text("hosts:\n  a: {address: x}\n  a: {address: y}\n")
    with pytest.raises(InventoryError, match=r"hosts.yaml line 3: duplicate key 'a'"):
        Inventory.load(inv)
    inv.write_text(alias_bomb() + "hosts: {}\n")
    with pytest.raises(InventoryError, match="values once its aliases are expanded"):
        Inventory.load(inv)
    inv.write_bytes(b"hosts:\n  caf\xe9: {address: x}\n")
    with pytest.raises(InventoryError, match="line 2: not UTF-8"):
        Inventory.load(inv)
