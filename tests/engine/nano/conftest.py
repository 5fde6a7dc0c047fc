"""Nano tests. Without CUDA, Triton kernels run under the interpreter (TRITON_INTERPRET=1,
set here before anything imports triton); with CUDA they run on the device in bf16."""

from __future__ import annotations

import os

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ["TRITON_INTERPRET"] = "1"

try:
    import triton  # noqa: F401

    HAS_TRITON = True
except ImportError:  # the torch paths still run
    HAS_TRITON = False

needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")


def kernel_cases() -> list[tuple[str, torch.dtype]]:
    """(device, dtype) pairs the kernel tests run: the device in bf16, or the interpreter."""
    if HAS_CUDA:
        return [("cuda", torch.bfloat16), ("cuda", torch.float16)]
    return [("cpu", torch.float32), ("cpu", torch.float16)]


def tol(dtype: torch.dtype) -> float:
    return {torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 2e-2}[dtype]


@pytest.fixture(autouse=True)
def _one_cpu_thread():
    """The tiny models' matrices are far too small for intra-op threads, which on a shared
    machine cost more than they give; restore the setting for tests elsewhere."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _qwen2_tied_sharded(out):
    """A Qwen2 checkpoint saved by transformers itself: tied embeddings, several shards."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(
        vocab_size=10240, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=512,
        tie_word_embeddings=True, eos_token_id=10239,
    )
    torch.manual_seed(5)
    model = Qwen2ForCausalLM(cfg)
    model.save_pretrained(out, safe_serialization=True, max_shard_size="400KB")
    return out


def _random_norms(arch, out, **extra):
    """A tiny checkpoint saved by transformers whose RMSNorm weights are not all ones (as
    engine/checkpoints.py and transformers' init leave them), so that folding them into
    the projections (fuse_norm_linear) shows."""
    import transformers

    cfg = getattr(transformers, f"{arch}Config")(
        vocab_size=10240, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        max_position_embeddings=512, tie_word_embeddings=False, **extra,
    )
    torch.manual_seed(6)
    model = getattr(transformers, f"{arch}ForCausalLM")(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(torch.empty_like(p).uniform_(0.2, 3.0))
            elif name.endswith(".bias"):
                p.copy_(torch.randn_like(p) * 0.5)
    model.save_pretrained(out, safe_serialization=True)
    return out


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """fp32 random checkpoints: name -> directory. tiny: Qwen2, untied; tiny-qwen3: Qwen3,
    tied; qwen2-tied: Qwen2, tied, sharded, written by transformers; qwen2-norms and
    qwen3-bias-norms (Qwen3 with attention_bias): RMSNorm weights not all ones."""
    from engine.checkpoints import write_checkpoint

    root = tmp_path_factory.mktemp("nano-ckpt")
    out = {
        arch: str(write_checkpoint(arch, root / arch, seed=0, dtype="float32"))
        for arch in ("tiny", "tiny-qwen3")
    }
    out["qwen2-tied"] = str(_qwen2_tied_sharded(root / "qwen2-tied"))
    out["qwen2-norms"] = str(_random_norms("Qwen2", root / "qwen2-norms"))
    out["qwen3-bias-norms"] = str(
        _random_norms("Qwen3", root / "qwen3-bias-norms", attention_bias=True))
    return out
