"""The Hugging Face cache: listing with sizes, offline download from the cache, a clear error when
offline and not cached, and HF_TOKEN never printed. A real cache layout built from local files."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from servemark.deploy.hub import cached_models, format_size
from tests.conftest import SRC

TOKEN = "hf_NeverShowThisToken1234"


def fake_cache(root: Path, repo: str, files: dict[str, bytes]) -> Path:
    """The layout huggingface_hub writes: blobs by hash, snapshot symlinks, refs/main."""
    base = root / ("models--" + repo.replace("/", "--"))
    rev = "a" * 40
    snap = base / "snapshots" / rev
    (base / "blobs").mkdir(parents=True)
    snap.mkdir(parents=True)
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text(rev)
    for name, data in files.items():
        blob = base / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snap / name).symlink_to(os.path.relpath(blob, snap))
    return snap


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env, "PYTHONPATH": str(SRC), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "servemark", *args], capture_output=True,
                          text=True, env=full, timeout=120)


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    root = tmp_path / "hub"
    fake_cache(root, "org/small", {"config.json": b"{}", "model.safetensors": b"x" * 3000})
    fake_cache(root, "org/big", {"config.json": b"{}", "model.safetensors": b"y" * 5_000_000})
    return root


def test_cached_models_with_sizes(cache: Path) -> None:
    models = cached_models(cache)
    assert [m.repo_id for m in models] == ["org/big", "org/small"]
    assert models[0].size_bytes >= 5_000_000 and models[0].files == 2 and models[0].refs == ("main",)
    assert cached_models(cache / "missing") == []
    assert format_size(5 * (1 << 30)) == "5.0 GiB" and format_size(1536) == "1.5 KiB"


def test_cli_models_and_offline_download(cache: Path) -> None:
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "HF_TOKEN": TOKEN}
    res = cli("models", env=env)
    assert res.returncode == 0, res.stderr
    assert "org/big" in res.stdout and "4.8 MiB" in res.stdout and "org/small" in res.stdout
    res = cli("download", "org/small", env=env)
    assert res.returncode == 0, res.stderr
    assert Path(res.stdout.strip().replace("\n", "")).joinpath("config.json").exists()
    res = cli("download", "org/not-here", env=env)
    assert res.returncode == 2
    assert "org/not-here is not in the cache" in res.stderr and "offline mode is on" in res.stderr
    assert "Traceback" not in res.stderr
    for r in (res,):
        assert TOKEN not in r.stdout + r.stderr
