"""The kernels' launch configurations chosen for a card (kernels/card.py, kernels/choose.py)."""

from __future__ import annotations

import pytest

from engine.nano.config import ModelConfig
from engine.nano.kernels.card import CARDS, Card
from tests.engine.nano.conftest import needs_triton

pytestmark = needs_triton
H200, RTX3090, RTX4090, A100 = (CARDS[n] for n in ("H200", "RTX 3090", "RTX 4090", "A100"))


def test_card_occupancy():
    # 39 KB a program: two on a 3090's 100 KB SM (1 KB of each kept by the runtime), five
    # on an H200's 228 KB; threads cap 4-warp programs at 12 and 16.
    assert RTX3090.programs_per_sm(39168, 4) == 2
    assert H200.programs_per_sm(39168, 4) == 5
    assert H200.programs_per_sm(0, 4) == 16 and RTX3090.programs_per_sm(0, 4) == 12
    assert RTX3090.programs_per_sm(RTX3090.smem_per_block + 1, 4) == 0
    # 99 registers a thread round to 3328 a warp: 19 warps, four programs of four.
    assert H200.programs_by_registers(99, 4) == 4
    assert RTX3090.programs_by_registers(255, 4) == 2
    assert all(c.has_bf16 for c in CARDS.values())
    assert not Card("T4", 75, 40, 65536, 65536, 1024).has_bf16


def test_h200_keeps_the_measured_configuration():
    from engine.nano.kernels.decode_attention import DecodeConfig, decode_config

    measured = DecodeConfig(block_n=64, num_warps=4, num_stages=3, slots=4 * 132)
    for head_dim, group in ((128, 6), (64, 7), (128, 4)):
        assert decode_config(H200, head_dim, group, 2) == measured
        assert decode_config(CARDS["H100 SXM"], head_dim, group, 2) == measured
    # The split rule as measured on the H200 (bench/BENCHMARKS.md), unchanged there.
    c = decode_config(H200, 128, 6, 2)
    assert c.num_splits(256, 2, 2048) == 1  # 512 programs fill the card
    assert c.num_splits(128, 2, 2048) == 3
    assert c.num_splits(64, 2, 300) == 2  # parts of at least 256 tokens
    assert c.num_splits(1, 2, 100_000) == 32  # at most MAX_SPLITS
    assert c.num_splits(0, 2, 0) == 1


def test_rtx3090_aims_at_the_two_programs_that_fit():
    from engine.nano.kernels.decode_attention import block_h, decode_config, smem_bytes

    c = decode_config(RTX3090, 128, 6, 2)
    assert (c.block_n, c.num_warps, c.num_stages) == (64, 4, 3)
    smem = smem_bytes(c.block_n, 128, block_h(6), c.num_stages, 2)
    assert 38_000 < smem < 40_000  # about 39 KB a program
    assert RTX3090.programs_per_sm(smem, c.num_warps) == 2
    assert c.slots == 2 * 82
    # 32 sequences x 2 KV heads: 64 programs; three parts give 192, about the 164 that fit
    # (the H200's aim of four an SM would take six parts, three waves on a 3090).
    assert c.num_splits(32, 2, 2048) == 3
    # 128 programs fill three quarters of the 164 slots: no split (the H200 rule: three).
    assert c.num_splits(64, 2, 2048) == 1
    # At head dim 64 a program takes about 20 KB: four fit, the H200's aim.
    assert decode_config(RTX3090, 64, 7, 2).slots == 4 * 82


def test_other_cards():
    from engine.nano.kernels.decode_attention import decode_config

    assert decode_config(A100, 128, 6, 2).slots == 4 * 108  # 164 KB an SM: four fit
    assert decode_config(RTX4090, 128, 6, 2).slots == 2 * 128


def test_fewer_stages_where_three_leave_one_program():
    from engine.nano.kernels.decode_attention import decode_config

    # 64 KB an SM (a T4's): three stages' 39 KB leave one program, one stage's 23 KB two.
    small = Card("T4", 75, 40, 65536, 65536, 1024)
    c = decode_config(small, 128, 6, 2)
    assert (c.num_stages, c.slots) == (1, 2 * 40)
    tiny = Card("no room", 80, 10, 16384, 15360, 1024)
    with pytest.raises(ValueError, match="does not fit the shared memory of no room"):
        decode_config(tiny, 128, 6, 2)


def test_choose_reads_the_model():
    from engine.archs import ARCHS
    from engine.nano.kernels.choose import choose
    from engine.nano.kernels.decode_attention import decode_config
    from engine.nano.kernels.prefill_attention import PrefillConfig

    mcfg = ModelConfig.from_dict(ARCHS["qwen2-1.5b"])
    chosen = choose(RTX3090, mcfg, 2)
    assert chosen.decode == decode_config(RTX3090, 128, 6, 2)
    assert chosen.prefill == PrefillConfig()


def test_every_kv_layout_has_a_measured_tile():
    from engine.archs import ARCHS
    from engine.nano.config import nano_options
    from engine.nano.kernels.choose import choose
    from engine.nano.kernels.decode_attention import MEASURED, decode_config

    assert set(MEASURED) == set(nano_options()["kv_layout"].choices) == {"token", "head"}
    mcfg = ModelConfig.from_dict(ARCHS["qwen2-1.5b"])
    for layout, tile in MEASURED.items():
        chosen = choose(H200, mcfg, 2, layout).decode
        assert chosen == decode_config(H200, 128, 6, 2, layout)
        assert (chosen.block_n, chosen.num_warps, chosen.num_stages) == (
            tile.block_n, tile.num_warps, tile.num_stages)
