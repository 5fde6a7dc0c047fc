"""engine/kernel_categories.py: kernel names as the profiler reports them on an H200 (nano's
Triton kernels, cuBLAS), vLLM's and flash-attn's, torch.compile's, and torch's CPU ops."""

import pytest

from engine.kernel_categories import CATEGORIES, category


@pytest.mark.parametrize("name,expected", [
    ("nvjet_sm90_tst_176x64_64x7_4x1_v_bz_TNN", "gemm"),
    ("void cublasLt::splitKreduce_kernel<32, 16, int, float, __nv_bfloat16>", "gemm"),
    ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64_cublas", "gemm"),
    ("_decode_split_kernel", "attention"),
    ("_decode_combine_kernel", "attention"),
    ("_prefill_kernel", "attention"),
    ("_store_kv_kernel", "kv_store"),
    ("_add_rmsnorm_kernel", "norm"),
    ("_rotary_kernel", "rotary"),
    ("_silu_mul_kernel", "activation"),
    ("_sample_kernel", "sampling"),
    ("void vllm::reshape_and_cache_flash_kernel<__nv_bfloat16>", "kv_store"),
    ("void flash::flash_fwd_splitkv_kernel<Flash_fwd_kernel_traits<128>>", "attention"),
    ("void cutlass::device_kernel<flash::FlashAttnFwdSm90<...>>", "attention"),
    ("void vllm::fused_add_rms_norm_kernel<c10::BFloat16, 8>", "norm"),
    ("void vllm::rotary_embedding_kernel<c10::BFloat16, true>", "rotary"),
    ("void vllm::act_and_mul_kernel<c10::BFloat16, &vllm::silu_kernel>", "activation"),
    ("triton_red_fused__to_copy_add_mean_mul_pow_rsqrt_0", "norm"),
    ("aten::addmm", "gemm"),
    ("aten::_scaled_dot_product_flash_attention_for_cpu", "attention"),
    ("aten::argmax", "sampling"),
    ("Memcpy HtoD (Pinned -> Device)", "other"),
    ("void at::native::elementwise_kernel<128, 2>", "other"),
])
def test_category(name: str, expected: str) -> None:
    assert category(name) == expected
    assert expected in CATEGORIES
