import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from engine import envinfo

ROOT = Path(__file__).resolve().parents[2]


def test_collect() -> None:
    info = envinfo.collect()
    assert info["python"] == sys.version.split()[0]
    assert info["hostname"] and info["platform"] and info["cpu_count"] >= 1
    assert info["torch"] == metadata.version("torch")
    assert info["transformers"] == metadata.version("transformers")
    assert "vllm" in info and "triton" in info and "cuda" in info
    assert "vllm" not in sys.modules
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True)
    expected_sha = head.stdout.decode().strip() if head.returncode == 0 else None
    assert info["git_sha"] == expected_sha


def test_no_gpu_entry_without_nvml() -> None:
    # These machines have no NVIDIA driver: NVML fails to start, so there is no gpu entry.
    if envinfo.gpu_info() is not None:
        pytest.skip("an NVIDIA GPU is visible here")
    assert "gpu" not in envinfo.collect()


def test_not_a_git_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(envinfo, "PROJECT_ROOT", tmp_path)
    info = envinfo.collect()
    assert info["git_sha"] is None and info["git_dirty"] is None


@pytest.mark.parametrize(("text", "sha", "dirty"), [("abc123\n", "abc123", False),
                                                    ("abc123+dirty\n", "abc123", True)])
def test_revision_file_without_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   text: str, sha: str, dirty: bool) -> None:
    # A provisioned host gets the project's files and a REVISION file, no .git.
    (tmp_path / "REVISION").write_text(text)
    monkeypatch.setattr(envinfo, "PROJECT_ROOT", tmp_path)
    info = envinfo.collect()
    assert (info["git_sha"], info["git_dirty"]) == (sha, dirty)


def test_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom() -> None:
        raise RuntimeError("no")

    monkeypatch.setattr(envinfo, "_cpu_model", boom)
    monkeypatch.setattr(envinfo, "_cuda_version", boom)
    monkeypatch.setattr(envinfo, "gpu_info", boom)
    info = envinfo.collect()
    assert info["cpu"] is None and info["cuda"] is None and "gpu" not in info


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, "0"), ("3", "3"), ("2,0", "2"), ("GPU-1a2b,1", "GPU-1a2b"), ("", None), ("-1", None)],
)
def test_visible_device(value: str | None, expected: str | None, monkeypatch) -> None:
    if value is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    assert envinfo.visible_device() == expected
    if expected is None:
        assert envinfo.gpu_info() is None


def test_revision_file_wins_over_a_stale_git(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # A tree synced onto a machine whose .git is from an older copy: REVISION names the tree.
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "old"], check=True)
    old = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True,
                         text=True).stdout.strip()
    monkeypatch.setattr(envinfo, "PROJECT_ROOT", tmp_path)
    assert envinfo.collect()["git_sha"] == old
    (tmp_path / "REVISION").write_text("f00d\n")
    assert envinfo.collect()["git_sha"] == "f00d"


def test_own_nice_and_affinity_are_the_kernel_s() -> None:
    # A child at nice 6 restricted to CPU 0 reads itself.
    code = ("from engine import envinfo; import os; os.nice(6); os.sched_setaffinity(0, {0}); "
            "print(envinfo.own_nice(), envinfo.own_affinity())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=Path(envinfo.__file__).parents[1], timeout=60, check=True)
    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert r.stdout.split(maxsplit=1) == [str(min(base + 6, 19)), "[0]\n"]
