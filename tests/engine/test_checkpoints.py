import hashlib
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM

from engine import checkpoints, memory_budget
from engine.archs import ARCHS
from engine.checkpoints import resolve, tensor_specs, write_checkpoint
from engine.job import ModelRef

ROOT = Path(__file__).resolve().parents[2]


def saved_tensors(d: Path) -> dict[str, torch.Tensor]:
    out = {}
    for f in sorted(d.glob("*.safetensors")):
        with safe_open(str(f), "pt") as st:
            out.update({k: st.get_tensor(k) for k in st.keys()})  # noqa: SIM118
    return out


def digest(d: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(d.iterdir()):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def test_registry_imports_without_torch() -> None:
    code = "import sys, engine.checkpoints; assert 'torch' not in sys.modules"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert set(ARCHS) == {"qwen2-1.5b", "qwen2-0.5b", "qwen3-0.6b", "qwen2-7b", "qwen3-8b",
                          "tiny", "tiny-qwen3"}


def test_qwen2_1_5b_tensors_on_meta() -> None:
    specs = dict(tensor_specs("qwen2-1.5b"))
    h, i, kv = 1536, 8960, 2 * 128
    layer = {
        "input_layernorm.weight": (h,),
        "post_attention_layernorm.weight": (h,),
        "self_attn.q_proj.weight": (h, h),
        "self_attn.q_proj.bias": (h,),
        "self_attn.k_proj.weight": (kv, h),
        "self_attn.k_proj.bias": (kv,),
        "self_attn.v_proj.weight": (kv, h),
        "self_attn.v_proj.bias": (kv,),
        "self_attn.o_proj.weight": (h, h),
        "mlp.gate_proj.weight": (i, h),
        "mlp.up_proj.weight": (i, h),
        "mlp.down_proj.weight": (h, i),
    }
    expected = {"model.embed_tokens.weight": (151936, h), "model.norm.weight": (h,)}
    for n in range(28):
        expected |= {f"model.layers.{n}.{k}": v for k, v in layer.items()}
    assert specs == expected  # tied: no lm_head.weight
    assert sum(torch.Size(s).numel() for s in specs.values()) == 1_543_714_304


def test_qwen3_0_6b_tensors_on_meta() -> None:
    specs = dict(tensor_specs("qwen3-0.6b"))
    assert "lm_head.weight" not in specs
    assert specs["model.layers.27.self_attn.q_proj.weight"] == (16 * 128, 1024)
    assert specs["model.layers.27.self_attn.k_proj.weight"] == (8 * 128, 1024)
    assert specs["model.layers.0.self_attn.q_norm.weight"] == (128,)
    assert not any(k.endswith(".bias") for k in specs)
    assert sum(torch.Size(s).numel() for s in specs.values()) == 596_049_920


@pytest.mark.parametrize(("arch", "params", "kv_bytes_per_token"), [
    ("qwen2-7b", 7_615_616_512, 2 * 28 * 4 * 128 * 2),  # the published parameter counts
    ("qwen3-8b", 8_190_735_360, 2 * 36 * 8 * 128 * 2),
])
def test_7b_class_tensors_on_meta(arch: str, params: int, kv_bytes_per_token: int) -> None:
    specs = dict(tensor_specs(arch))
    assert "lm_head.weight" in specs  # untied, as the published models
    assert sum(torch.Size(s).numel() for s in specs.values()) == params
    assert memory_budget.kv_bytes_per_token(ARCHS[arch], "bfloat16") == kv_bytes_per_token


WRITE_PEAK = """
import resource, sys
import torch, transformers
from engine import checkpoints, memory_budget
checkpoints.MAX_SHARD_BYTES = 128 << 20
checkpoints.tensor_specs("qwen2-0.5b")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
checkpoints.write_checkpoint("qwen2-0.5b", sys.argv[1])
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


def test_writes_in_bf16_chunks_never_the_whole_model(tmp_path: Path) -> None:
    """Host memory while writing grows by about a shard and the largest tensor, never by
    the whole checkpoint (nor a float32 copy of it): a 7B checkpoint is 15 GB in bf16."""
    r = subprocess.run([sys.executable, "-c", WRITE_PEAK, str(tmp_path / "m")], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    grown = int(r.stdout)
    saved = sum(f.stat().st_size for f in (tmp_path / "m").glob("*.safetensors"))
    embed = 151936 * 896 * 2
    assert saved > 900e6
    assert grown < (128 << 20) + embed + (150 << 20) < saved, (grown, saved)


@pytest.mark.parametrize("arch", ["tiny", "tiny-qwen3"])
def test_tiny_loads_in_transformers(arch: str, tmp_path: Path) -> None:
    d = write_checkpoint(arch, tmp_path / arch, seed=3)
    config = json.loads((d / "config.json").read_text())
    assert config["architectures"] == ARCHS[arch]["architectures"]
    assert config["model_type"] == ARCHS[arch]["model_type"]
    assert config["torch_dtype"] == "bfloat16"
    assert not (d / "model.safetensors.index.json").exists()

    model, info = AutoModelForCausalLM.from_pretrained(
        d, dtype=torch.float32, output_loading_info=True
    )
    assert not any(info.values()), info
    saved = saved_tensors(d)
    state = model.state_dict()
    tied = ARCHS[arch]["tie_word_embeddings"]
    assert set(saved) == set(state) - ({"lm_head.weight"} if tied else set())
    for name, t in saved.items():
        assert t.dtype == torch.bfloat16
        assert t.shape == state[name].shape, name
        assert torch.equal(t.float(), state[name]), name
    assert torch.all(saved["model.norm.weight"] == 1)
    assert 0.015 < saved["model.embed_tokens.weight"].float().std() < 0.025
    if tied:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    else:
        assert not torch.equal(saved["lm_head.weight"], saved["model.embed_tokens.weight"])
    out = model(torch.tensor([[1, 2, 3, 10000]])).logits
    assert out.shape == (1, 4, 10240) and torch.isfinite(out).all()


def test_seeded_and_deterministic(tmp_path: Path) -> None:
    a = write_checkpoint("tiny", tmp_path / "a", seed=1)
    b = write_checkpoint("tiny", tmp_path / "b", seed=1)
    c = write_checkpoint("tiny", tmp_path / "c", seed=2)
    assert digest(a) == digest(b) != digest(c)


def test_float32_and_sharding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checkpoints, "MAX_SHARD_BYTES", 2 * 1024**2)
    d = write_checkpoint("tiny", tmp_path / "f32", dtype="float32")
    files = sorted(p.name for p in d.glob("*.safetensors"))
    assert len(files) > 1 and files[0] == f"model-00001-of-{len(files):05d}.safetensors"
    index = json.loads((d / "model.safetensors.index.json").read_text())
    saved = saved_tensors(d)
    assert set(index["weight_map"]) == set(saved)
    assert set(index["weight_map"].values()) == set(files)
    assert index["metadata"]["total_size"] == sum(t.numel() * 4 for t in saved.values())
    assert all(t.dtype == torch.float32 for t in saved.values())
    _, info = AutoModelForCausalLM.from_pretrained(d, output_loading_info=True)
    assert not any(info.values()), info


def test_refuses_non_empty_dir_and_bad_names(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep").write_text("")
    with pytest.raises(FileExistsError):
        write_checkpoint("tiny", tmp_path / "x")
    with pytest.raises(ValueError, match="unknown architecture 'llama'"):
        write_checkpoint("llama", tmp_path / "y")
    with pytest.raises(ValueError, match="unknown dtype"):
        write_checkpoint("tiny", tmp_path / "y", dtype="int8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]


def test_resolve_path(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=f"{tmp_path / 'missing'} is not a directory"):
        resolve(ModelRef(path=str(tmp_path / "missing")))
    with pytest.raises(ValueError, match=f"{tmp_path} has no config.json"):
        resolve(ModelRef(path=str(tmp_path)))
    (tmp_path / "config.json").write_text("{}")
    assert resolve(ModelRef(path=str(tmp_path))) == tmp_path
    with pytest.raises(ValueError, match="neither"):
        resolve(ModelRef())
    with pytest.raises(ValueError, match="unknown architecture"):
        resolve(ModelRef(arch="gpt5"))


def test_resolve_arch_writes_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCHSWEEP_CACHE", str(tmp_path))
    stale = tmp_path / "models" / ".tiny-s0.tmp-crashed"
    stale.mkdir(parents=True)
    writes = []
    real_write = checkpoints.write_checkpoint

    def counting_write(*args, **kwargs):
        writes.append(args)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(checkpoints, "write_checkpoint", counting_write)
    results: list[Path] = []
    # flock excludes separate open()s even within one process, so threads race for real.
    threads = [
        threading.Thread(target=lambda: results.append(resolve(ModelRef(arch="tiny"))))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [tmp_path / "models" / "tiny-s0"] * 4
    assert len(writes) == 1
    assert (results[0] / "config.json").is_file()
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [".tiny-s0.lock", "tiny-s0"]
    assert resolve(ModelRef(arch="tiny", seed=1)) == tmp_path / "models" / "tiny-s1"
    assert len(writes) == 2


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert checkpoints.main(["--arch", "tiny-qwen3", "--out", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("wrote tiny-qwen3 (seed 0, bfloat16,")
    assert (tmp_path / "m" / "model.safetensors").is_file()

    r = subprocess.run(
        [sys.executable, "-m", "engine.checkpoints", "--arch", "nope", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: unknown architecture 'nope'; known: qwen2-0.5b, qwen2-1.5b, qwen2-7b, "
        "qwen3-0.6b, qwen3-8b, tiny, tiny-qwen3"
    ]
