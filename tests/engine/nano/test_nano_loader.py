from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from engine.nano.config import ModelConfig
from engine.nano.loader import LoadError, checkpoint_files, load_weights
from engine.nano.models import model_class


def build(model_dir: str):
    cfg = ModelConfig.from_dir(model_dir)
    return model_class(cfg.model_type)(cfg, 64)


def edited(src: str, dst: Path, edit) -> str:
    """A copy of checkpoint src whose (single) safetensors file went through edit(dict)."""
    shutil.copytree(src, dst)
    [f] = checkpoint_files(dst)
    tensors = load_file(f)
    edit(tensors)
    save_file(tensors, f)
    return str(dst)


@pytest.mark.parametrize("arch", ["tiny", "tiny-qwen3", "qwen2-tied"])
def test_loads_every_tensor(checkpoints, arch):
    model = build(checkpoints[arch])
    load_weights(model, checkpoints[arch])
    tensors = {}
    for f in checkpoint_files(checkpoints[arch]):
        tensors |= load_file(f)
    attn = model.model.layers[1].self_attn
    q = tensors["model.layers.1.self_attn.q_proj.weight"]
    v = tensors["model.layers.1.self_attn.v_proj.weight"]
    assert torch.equal(attn.qkv_proj.weight[: q.shape[0]], q)
    assert torch.equal(attn.qkv_proj.weight[-v.shape[0] :], v)
    cfg = ModelConfig.from_dir(checkpoints[arch])
    assert torch.equal(
        model.model.layers[0].mlp.gate_up_proj.weight[cfg.intermediate_size :],
        tensors["model.layers.0.mlp.up_proj.weight"],
    )
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == cfg.tie_word_embeddings


def test_sharded_checkpoint_has_several_files(checkpoints):
    assert len(checkpoint_files(checkpoints["qwen2-tied"])) > 1


def test_missing_tensor_is_named(checkpoints, tmp_path):
    d = edited(checkpoints["tiny"], tmp_path / "m",
               lambda t: t.pop("model.layers.1.self_attn.k_proj.bias"))
    name = r"'model\.layers\.1\.self_attn\.k_proj\.bias'"
    with pytest.raises(LoadError, match="missing tensor " + name):
        load_weights(build(d), d)


def test_missing_plain_tensor_is_named(checkpoints, tmp_path):
    d = edited(checkpoints["tiny"], tmp_path / "m", lambda t: t.pop("lm_head.weight"))
    with pytest.raises(LoadError, match=r"missing tensor 'lm_head\.weight'"):
        load_weights(build(d), d)


def test_extra_tensor_is_named(checkpoints, tmp_path):
    def add(t):
        t["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.zeros(8)

    d = edited(checkpoints["tiny"], tmp_path / "m", add)
    with pytest.raises(LoadError, match=r"unexpected tensor 'model\.layers\.0\.self_attn\.rotary"):
        load_weights(build(d), d)


def test_misshaped_tensor_is_named(checkpoints, tmp_path):
    def shrink(t):
        name = "model.layers.0.mlp.down_proj.weight"
        t[name] = t[name][:, :-1].contiguous()

    d = edited(checkpoints["tiny"], tmp_path / "m", shrink)
    with pytest.raises(LoadError, match=r"'model\.layers\.0\.mlp\.down_proj\.weight' has shape"):
        load_weights(build(d), d)


def test_bias_where_the_arch_has_none_is_an_error(checkpoints, tmp_path):
    def add(t):
        t["model.layers.0.self_attn.o_proj.bias"] = torch.zeros(64)

    d = edited(checkpoints["tiny"], tmp_path / "m", add)
    with pytest.raises(LoadError, match=r"unexpected tensor 'model\.layers\.0\.self_attn\.o_proj"):
        load_weights(build(d), d)


def test_tied_copy_must_match(checkpoints, tmp_path):
    def same(t):
        t["lm_head.weight"] = t["model.embed_tokens.weight"].clone()

    d = edited(checkpoints["tiny-qwen3"], tmp_path / "ok", same)
    load_weights(build(d), d)

    def other(t):
        t["lm_head.weight"] = t["model.embed_tokens.weight"] + 1

    d = edited(checkpoints["tiny-qwen3"], tmp_path / "bad", other)
    with pytest.raises(LoadError, match=r"'lm_head\.weight' differs"):
        load_weights(build(d), d)


def test_unsupported_config_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="model_type 'llama'"):
        ModelConfig.from_dict({"model_type": "llama"})
    with pytest.raises(FileNotFoundError):
        ModelConfig.from_dir(tmp_path)
