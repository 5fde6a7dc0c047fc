"""engine/card_figures.py: measured once in a child process, then read from the cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import card_figures, envinfo


def test_measured_once_then_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCHSWEEP_CACHE", str(tmp_path))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # the CPU, here and on a GPU machine
    env = envinfo.collect()
    first = card_figures.cached(env)
    assert first.name.startswith("CPU") and first.matmul_dtype == "float32"
    assert first.copy_bytes_per_s > 1e8 and first.matmul_flops_per_s > 1e8
    (path,) = (tmp_path / "cards").iterdir()
    data = json.loads(path.read_text())
    assert data["key"] == card_figures.cache_key(env)
    data["figures"]["copy_bytes_per_s"] = 123.0  # read back, not measured again
    path.write_text(json.dumps(data))
    assert card_figures.cached(env).copy_bytes_per_s == 123.0
    # Another torch, or another device, is another key.
    assert card_figures.cache_key(env | {"gpu": {"uuid": "GPU-x"}}) != data["key"]
