"""engine/roofline.py against figures worked out by hand on a toy Qwen2."""

import pytest

from engine.nano.config import ModelConfig
from engine.roofline import model_size, roofline, workload_cost

# hidden 4, intermediate 8, 1 layer, 2 query heads and 1 KV head of dimension 2, vocab 10.
TOY = ModelConfig(model_type="qwen2", vocab_size=10, hidden_size=4, intermediate_size=8,
                  num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=2,
                  rms_norm_eps=1e-6, rope_theta=1e4, max_position_embeddings=64,
                  tie_word_embeddings=False, qkv_bias=True, o_bias=False, qk_norm=False)


def test_model_size() -> None:
    s = model_size(TOY, itemsize=2)
    # qkv 4*(4+2+2) = 32, o 4*4 = 16, gate/up/down 3*4*8 = 96
    assert s.layer_matmul_params == 144
    assert s.head_params == 40
    # layer 144 + qkv bias 8 + two norms 8, final norm 4, LM head 40; 2 bytes each
    assert s.step_weight_bytes == 2 * (160 + 4 + 40) == 408
    assert s.kv_bytes_per_token == 2 * 1 * 1 * 2 * 2 == 8
    assert s.attn_flops_per_context_token == 4 * 2 * 2 * 1 == 16


def test_workload_cost() -> None:
    # Prompts of 3 and 5 tokens, 2 and 4 output tokens, two at a time.
    c = workload_cost(model_size(TOY, 2), [3, 5], [2, 4], max_num_seqs=2)
    assert c.prefill_steps == 1
    # 8 prompt tokens through the layer, 2 through the head, causal 3*4/2 + 5*6/2 = 21
    assert c.prefill_flops == 2 * 144 * 8 + 2 * 40 * 2 + 16 * 21 == 2800
    assert c.prefill_bytes == 408 + 8 * 8 == 472
    # Decode tokens 1 + 3; contexts 4, and 6 + 7 + 8: 25. The longer sequence needs 3 steps.
    assert c.decode_steps == 3
    assert c.decode_flops == 2 * (144 + 40) * 4 + 16 * 25 == 1872
    assert c.decode_bytes == 408 * 3 + 8 * 25 + 8 * 4 == 1456


def test_floor_is_the_slower_of_bytes_and_flops_in_each_phase() -> None:
    c = workload_cost(model_size(TOY, 2), [3, 5], [2, 4], max_num_seqs=2)
    r = roofline(c, "toy", copy_bytes_per_s=100.0, matmul_flops_per_s=200.0)
    assert r.prefill_floor_s == pytest.approx(2800 / 200)  # compute-bound: 472 / 100 less
    assert r.decode_floor_s == pytest.approx(1456 / 100)  # memory-bound: 1872 / 200 less
    assert r.floor_s == pytest.approx(14 + 14.56)


def test_decode_steps_take_the_batch_when_sequences_are_many() -> None:
    c = workload_cost(model_size(TOY, 2), [1] * 5, [3] * 5, max_num_seqs=2)
    assert c.prefill_steps == 3 and c.decode_steps == 5  # 10 decode tokens, 2 a step
