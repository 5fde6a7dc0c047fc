"""Each Triton kernel against its torch reference (interpreter on CPU, bf16 on CUDA)."""

from __future__ import annotations

import pytest
import torch

from engine.nano.kernels import reference as ref
from engine.nano.kv_layout import KV_LAYOUTS, block_shape, blocks_view
from tests.engine.nano.conftest import kernel_cases, needs_triton, tol

pytestmark = needs_triton
CASES = kernel_cases()


def _cache(num_blocks, block_size, kvh, d, dtype, device, layout, gen=None):
    """A layer's K (or V) cache laid out as `layout` lays it out, as its readers view it:
    random with a generator, else zeros."""
    shape = (num_blocks, *block_shape(layout, block_size, kvh, d))
    stored = torch.zeros(shape) if gen is None else torch.randn(shape, generator=gen)
    return blocks_view(stored.to(device, dtype), layout)


def _paged_cache(lens, block_size, kvh, d, dtype, device, gen, layout="token"):
    """Random caches (a few spare blocks) and a shuffled block table covering each length."""
    num_blocks = sum((n + block_size - 1) // block_size for n in lens) + 3
    kc = _cache(num_blocks, block_size, kvh, d, dtype, device, layout, gen)
    vc = _cache(num_blocks, block_size, kvh, d, dtype, device, layout, gen)
    need = [(n + block_size - 1) // block_size for n in lens]
    perm = torch.randperm(num_blocks, generator=gen).tolist()
    width = max(need + [1])
    bt = torch.zeros(len(lens), width, dtype=torch.int32)
    at = 0
    for i, k in enumerate(need):
        bt[i, :k] = torch.tensor(perm[at : at + k], dtype=torch.int32)
        at += k
    return kc, vc, bt.to(device)


@pytest.mark.parametrize("device,dtype", CASES)
@pytest.mark.parametrize("layout", KV_LAYOUTS)
def test_store_kv(device, dtype, layout):
    from engine.nano.kernels.store_kv import store_kv

    g = torch.Generator().manual_seed(0)
    t, kvh, d, nb, bs = 7, 2, 16, 4, 4
    qkv = torch.randn(t, (4 + 2 * kvh) * d, generator=g).to(device, dtype)
    k = qkv[:, 4 * d : (4 + kvh) * d].view(t, kvh, d)  # strided views, as the model has
    v = qkv[:, (4 + kvh) * d :].view(t, kvh, d)
    slots = torch.tensor([5, 0, -1, 15, 3, 9, -1], device=device)
    caches = [_cache(nb, bs, kvh, d, dtype, device, layout) for _ in range(4)]
    store_kv(k, v, caches[0], caches[1], slots)
    ref.store_kv_ref(k, v, caches[2], caches[3], slots)
    assert torch.equal(caches[0], caches[2]) and torch.equal(caches[1], caches[3])
    # Slot 9 is block 2, offset 1: token 5's K for every head, wherever the layout puts it.
    assert torch.equal(caches[0][2, 1], k[5]) and torch.equal(caches[1][9 // bs, 9 % bs], v[5])
    assert int((caches[0] != 0).any(-1).sum()) == 5 * kvh  # five tokens stored, no more


@pytest.mark.parametrize("device,dtype", CASES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_store_kv_finishes_v(device, dtype, with_bias):
    """fuse_norm_linear: the cache takes v * scale + bias; k as it is."""
    from engine.nano.kernels.store_kv import store_kv

    g = torch.Generator().manual_seed(0)
    t, kvh, d, nb, bs = 7, 2, 16, 4, 4
    k, v = torch.randn(2, t, kvh, d, generator=g).to(device, dtype)
    scale = torch.rand(t, generator=g).add(0.5).to(device)
    bias = torch.randn(kvh * d, generator=g).to(device, dtype) if with_bias else None
    slots = torch.tensor([5, 0, -1, 15, 3, 9, -1], device=device)
    caches = [torch.zeros(nb, bs, kvh, d, device=device, dtype=dtype) for _ in range(4)]
    store_kv(k, v, caches[0], caches[1], slots, scale, bias)
    ref.store_kv_ref(k, ref.scale_bias_ref(v, scale, bias), caches[2], caches[3], slots)
    assert torch.equal(caches[0], caches[2])
    torch.testing.assert_close(caches[1].float(), caches[3].float(), rtol=tol(dtype),
                               atol=tol(dtype))


@pytest.mark.parametrize("device,dtype", CASES)
@pytest.mark.parametrize("with_residual", [True, False])
def test_add_rmsnorm(device, dtype, with_residual):
    from engine.nano.kernels.rmsnorm import add_rmsnorm

    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 48, generator=g).to(device, dtype)
    r = torch.randn(5, 48, generator=g).to(device, dtype) if with_residual else None
    w = (1 + 0.1 * torch.randn(48, generator=g)).to(device, dtype)
    y, h = add_rmsnorm(x, r, w, 1e-6)
    y_ref, h_ref = ref.add_rmsnorm_ref(x, r, w, 1e-6)
    torch.testing.assert_close(h, h_ref, rtol=0, atol=0)
    torch.testing.assert_close(y.float(), y_ref.float(), rtol=tol(dtype), atol=tol(dtype))


@pytest.mark.parametrize("device,dtype", CASES)
@pytest.mark.parametrize("with_residual", [True, False])
def test_add_rms(device, dtype, with_residual):
    """fuse_norm_linear's norm: the sum and each row's 1/rms, whose product with the
    weight is the unfused kernel's output."""
    from engine.nano.kernels.rmsnorm import add_rms

    g = torch.Generator().manual_seed(1)
    x = (3 * torch.randn(5, 48, generator=g)).to(device, dtype)
    r = torch.randn(5, 48, generator=g).to(device, dtype) if with_residual else None
    w = (1 + 0.1 * torch.randn(48, generator=g)).to(device, dtype)
    h, scale = add_rms(x, r, 1e-6)
    h_ref, scale_ref = ref.add_rms_ref(x, r, 1e-6)
    assert scale.dtype == torch.float32 and scale.shape == (5,)
    torch.testing.assert_close(h, h_ref, rtol=0, atol=0)
    torch.testing.assert_close(scale, scale_ref, rtol=1e-5, atol=0)
    y_ref = ref.add_rmsnorm_ref(x, r, w, 1e-6)[0]
    torch.testing.assert_close((h.float() * scale[:, None] * w.float()), y_ref.float(),
                               rtol=tol(dtype), atol=tol(dtype))


# Tiles across blocks (BLOCK_N above the block size) and within one (BLOCK_N dividing it).
@pytest.mark.parametrize("device,dtype", CASES)
@pytest.mark.parametrize("group,block_size,splits,block_n,layout",
                         [(1, 4, 1, 32, "token"), (6, 16, 1, 64, "head"), (3, 16, 3, 16, "token"),
                          (4, 16, 8, 32, "token"), (3, 32, 3, 16, "head"),
                          (2, 16, 1, 16, "head")])
def test_paged_decode_attention(device, dtype, group, block_size, splits, block_n, layout):
    from engine.nano.kernels.decode_attention import DecodeConfig, paged_decode_attention

    g = torch.Generator().manual_seed(2)
    kvh, d = 2, 32
    lens = [1, 37, 70, 0]  # 0: a CUDA-graph padding row
    kc, vc, bt = _paged_cache(lens, block_size, kvh, d, dtype, device, g, layout)
    q = torch.randn(len(lens), kvh * group, d, generator=g).to(device, dtype)
    ctx = torch.tensor(lens, dtype=torch.int32, device=device)
    out = paged_decode_attention(q, kc, vc, bt, ctx, d**-0.5, splits,
                                 config=DecodeConfig(block_n=block_n))
    want = ref.decode_attention_ref(q, kc, vc, bt, ctx, d**-0.5)
    assert torch.all(out[3] == 0)
    torch.testing.assert_close(out[:3].float(), want[:3].float(), rtol=tol(dtype), atol=tol(dtype))


@pytest.mark.parametrize("device,dtype", CASES)
@pytest.mark.parametrize("group,block_size,layout", [(1, 16, "token"), (2, 8, "head")])
def test_prefill_attention(device, dtype, group, block_size, layout):
    from engine.nano.kernels.prefill_attention import prefill_attention

    g = torch.Generator().manual_seed(3)
    kvh, d = 2, 32
    new = [5, 70, 1, 33]  # new tokens per sequence
    prefix = [0, 10, 40, 16]  # cached before (chunked prefill or prefix-cache hits)
    ctx = [a + b for a, b in zip(new, prefix, strict=True)]
    kc, vc, bt = _paged_cache(ctx, block_size, kvh, d, dtype, device, g, layout)
    q = torch.randn(sum(new), kvh * group, d, generator=g).to(device, dtype)
    cu = [0]
    for n in new:
        cu.append(cu[-1] + n)
    cu_t = torch.tensor(cu, dtype=torch.int32, device=device)
    ctx_t = torch.tensor(ctx, dtype=torch.int32, device=device)
    out = prefill_attention(q, kc, vc, bt, cu_t, ctx_t, max(new), d**-0.5)
    want = ref.prefill_attention_ref(q, kc, vc, bt, cu, ctx, d**-0.5)
    torch.testing.assert_close(out.float(), want.float(), rtol=tol(dtype), atol=tol(dtype))


def test_decode_matches_prefill_reference():
    """The two torch references agree: a decode is a prefill of one new token; and they read
    the same values in either layout."""
    g = torch.Generator().manual_seed(4)
    kc, vc, bt = _paged_cache([9, 20], 4, 2, 16, torch.float32, "cpu", g)
    q = torch.randn(2, 4, 16, generator=g)
    ctx = torch.tensor([9, 20], dtype=torch.int32)
    a = ref.decode_attention_ref(q, kc, vc, bt, ctx, 0.25)
    b = ref.prefill_attention_ref(q, kc, vc, bt, [0, 1, 2], [9, 20], 0.25)
    torch.testing.assert_close(a, b)
    kh, vh = (_cache(*kc.shape[:2], 2, 16, torch.float32, "cpu", "head") for _ in "kv")
    kh.copy_(kc)
    vh.copy_(vc)
    assert kh.stride() != kc.stride()
    torch.testing.assert_close(ref.decode_attention_ref(q, kh, vh, bt, ctx, 0.25), a)
    torch.testing.assert_close(
        ref.prefill_attention_ref(q, kh, vh, bt, [0, 1, 2], [9, 20], 0.25), b)


@pytest.mark.parametrize("device,dtype", CASES)
def test_rotary(device, dtype):
    from engine.nano.kernels.rotary import apply_rotary
    from engine.nano.layers.rotary import RotaryEmbedding

    g = torch.Generator().manual_seed(4)
    t, h, kvh, d = 5, 6, 2, 32
    rope = RotaryEmbedding(d, 4096, 1e6).to(device)
    qkv = torch.randn(t, (h + 2 * kvh) * d, generator=g).to(device, dtype)
    q = qkv[:, : h * d].view(t, h, d)  # strided views of one merged output, as the model has
    k = qkv[:, h * d : (h + kvh) * d].view(t, kvh, d)
    v_before = qkv[:, (h + kvh) * d :].clone()
    positions = torch.tensor([0, 1, 17, 511, 4095], device=device)
    q_ref, k_ref = ref.rotary_ref(positions, q.clone(), k.clone(), rope.cos, rope.sin)
    q_out, k_out = apply_rotary(positions, q, k, rope.cos, rope.sin)
    assert q_out.data_ptr() == q.data_ptr()  # in place
    torch.testing.assert_close(q.float(), q_ref.float(), rtol=tol(dtype), atol=tol(dtype))
    torch.testing.assert_close(k.float(), k_ref.float(), rtol=tol(dtype), atol=tol(dtype))
    assert torch.equal(qkv[:, (h + kvh) * d :], v_before)  # v untouched


@pytest.mark.parametrize("device,dtype", CASES)
@pytest.mark.parametrize(("with_bias", "with_norm"), [(False, False), (True, False),
                                                      (False, True), (True, True)])
def test_rotary_with_prologue(device, dtype, with_bias, with_norm):
    """fuse_norm_linear: q and k times the row scale, plus bias, (Qwen3) per-head RMSNorm,
    then rotated; in place, v untouched."""
    from engine.nano.kernels.rotary import apply_rotary
    from engine.nano.layers.rotary import RotaryEmbedding

    g = torch.Generator().manual_seed(4)
    t, h, kvh, d = 5, 6, 2, 32
    rope = RotaryEmbedding(d, 4096, 1e6).to(device)
    qkv = torch.randn(t, (h + 2 * kvh) * d, generator=g).to(device, dtype)
    q = qkv[:, : h * d].view(t, h, d)
    k = qkv[:, h * d : (h + kvh) * d].view(t, kvh, d)
    v_before = qkv[:, (h + kvh) * d :].clone()
    pro = ref.QKPrologue(scale=torch.rand(t, generator=g).add(0.5).to(device))
    if with_bias:
        pro.q_bias = torch.randn(h * d, generator=g).to(device, dtype)
        pro.k_bias = torch.randn(kvh * d, generator=g).to(device, dtype)
    if with_norm:
        pro.q_norm, pro.k_norm = torch.rand(2, d, generator=g).add(0.5).to(device, dtype)
        pro.eps = 1e-6
    positions = torch.tensor([0, 1, 17, 511, 4095], device=device)
    q_ref, k_ref = ref.rotary_ref(positions, *ref.qk_prologue_ref(q, k, pro), rope.cos,
                                  rope.sin)
    apply_rotary(positions, q, k, rope.cos, rope.sin, pro)
    torch.testing.assert_close(q.float(), q_ref.float(), rtol=tol(dtype), atol=3 * tol(dtype))
    torch.testing.assert_close(k.float(), k_ref.float(), rtol=tol(dtype), atol=3 * tol(dtype))
    assert torch.equal(qkv[:, (h + kvh) * d :], v_before)


@pytest.mark.parametrize("device,dtype", CASES)
def test_silu_and_mul(device, dtype):
    from engine.nano.kernels.silu_mul import silu_and_mul

    g = torch.Generator().manual_seed(5)
    x = (3 * torch.randn(4, 2 * 1100, generator=g)).to(device, dtype)  # N over one block
    out = silu_and_mul(x)
    torch.testing.assert_close(out.float(), ref.silu_and_mul_ref(x).float(), rtol=tol(dtype),
                               atol=tol(dtype))
    scale = torch.rand(4, generator=g).add(0.5).to(device)  # fuse_norm_linear's row scale
    out = silu_and_mul(x, scale)
    want = ref.silu_and_mul_ref(x, scale)
    torch.testing.assert_close(out.float(), want.float(), rtol=tol(dtype), atol=3 * tol(dtype))
    assert not torch.allclose(want, ref.silu_and_mul_ref(x))


@pytest.mark.parametrize("device,dtype", CASES)
def test_sample_greedy_rows_are_argmax(device, dtype):
    from engine.nano.kernels.sample import BLOCK, sample

    g = torch.Generator().manual_seed(6)
    logits = torch.randn(4, 5000, generator=g)  # over several blocks of the vocabulary loop
    logits[1, 4999] = 50.0  # the maximum in the last, partial block
    logits[2, [7, 3000]] = 50.0  # a tie: the first index wins, as torch.argmax
    logits = logits.to(device, dtype)
    temps = torch.tensor([0.0, 0.0, 0.0, 0.8], device=device)
    # One chunk a row, and five (the tie across chunks): the same tokens either way, the
    # sampled row too (the noise is keyed by the token, not by the chunk).
    one, five = sample(logits, temps, seed=1), sample(logits, temps, seed=1, chunk=BLOCK)
    assert one.tolist() == five.tolist()
    assert one[:3].tolist() == logits[:3].float().argmax(-1).tolist() == [one[0].item(), 4999, 7]


@pytest.mark.parametrize("device,dtype", CASES[:1])
def test_sample_follows_the_softmax(device, dtype):
    from engine.nano.kernels.sample import sample

    row = torch.tensor([0.0, 1.0, 2.0, -30.0, 0.5])
    temp, n = 0.7, 400  # one interpreted program a row: 400 keep the test under half a minute
    logits = row.expand(n, -1).contiguous().to(device, dtype)
    temps = torch.full((n,), temp, device=device)
    first = sample(logits, temps, seed=3).cpu()
    counts = torch.bincount(first, minlength=5).double() / n
    expected = torch.softmax(row.double() / temp, -1)
    assert (counts - expected).abs().max() < 0.08, (counts, expected)  # > 3 sigma at n=400
    assert counts[3] == 0
    assert not torch.equal(sample(logits, temps, seed=4).cpu(), first)

