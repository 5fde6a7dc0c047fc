"""Which part of a model a kernel (or, on CPU, an operator) belongs to, by its name: the one
table, for nano's Triton kernels, cuBLAS/cutlass GEMMs, vLLM's and flash-attn's kernels,
torch.compile's fused Triton kernels and torch's CPU operators."""

from __future__ import annotations

CATEGORIES = ("gemm", "attention", "norm", "activation", "rotary", "kv_store", "sampling",
              "other")

# First match wins, on the lower-cased name. kv_store comes before attention because
# vLLM's reshape_and_cache_flash_kernel names flash; attention before gemm because
# flash-attn's cutlass kernels name cutlass and sm90.
_RULES = (
    ("kv_store", ("store_kv", "reshape_and_cache", "concat_and_cache")),
    ("attention", ("_decode_split_kernel", "_decode_combine_kernel", "_prefill_kernel",
                   "attention", "attn", "flash", "fmha", "paged", "batchdecode",
                   "batchprefill", "merge_attn_states")),
    ("rotary", ("rotary", "rope")),
    ("norm", ("rmsnorm", "rms_norm", "layer_norm", "layernorm", "rsqrt")),
    ("activation", ("silu", "gelu", "act_and_mul", "swiglu")),
    ("sampling", ("sample", "argmax", "softmax", "exponential", "multinomial", "topk",
                  "top_k", "top_p", "sort", "gumbel", "distribution")),
    ("gemm", ("gemm", "gemv", "nvjet", "cutlass", "xmma", "cublas", "splitk", "matmul",
              "aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "mkldnn")),
)


def category(name: str) -> str:
    """One of CATEGORIES; "other" for what no rule names (copies, memsets, elementwise)."""
    low = name.lower()
    return next((c for c, keys in _RULES if any(k in low for k in keys)), "other")
