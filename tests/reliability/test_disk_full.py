"""Disk full while writing results: one clear error line, a non-zero exit, and every record
written before the disk filled is kept (readable; at most the last line torn)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import servemark
from servemark.api import resume_bench
from servemark.errors import ResultsError
from servemark.store import rundir
from servemark.store.rundir import load_records
from tests.conftest import SRC, need


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_disk_full_on_a_small_tmpfs(stub_server, tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    # without mount permission the injected-ENOSPC test below still covers the path (a skip
    # locally, a failure in CI)
    need(_mount_tmpfs(mnt, "96k"), "mounting a tmpfs needs root and mount permission")
    try:
        stub = stub_server()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])))
        out = mnt / "run"
        proc = subprocess.run(
            [sys.executable, "-m", "servemark", "bench", "--base-url", stub.base_url,
             "--concurrency", "8", "--num-requests", "5000", "--input-len", "16", "--output-len", "16",
             "--no-server-metrics", "--output-dir", str(out)],
            capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" not in proc.stderr
        assert "No space left on device" in proc.stderr and "requests.jsonl" in proc.stderr
        loaded = load_records(out)
        assert len(loaded.records) > 20 and loaded.torn_lines <= 1
        assert all(r.ok for r in loaded.records)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _parses(tail: bytes) -> bool:
    try:
        return isinstance(json.loads(tail), dict)
    except ValueError:
        return False


class _FillingFile:
    """Stands in for requests.jsonl on a disk with ``room`` bytes left: a short write, then ENOSPC."""

    def __init__(self, real, room: int) -> None:
        self.real, self.room = real, room

    def write(self, data) -> int:
        if self.room <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        part = bytes(data[: self.room])
        self.room -= len(part)
        return self.real.write(part)

    def close(self) -> None:
        self.real.close()


def test_injected_enospc_stops_the_run_and_keeps_records(stub_server, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    real_init = rundir.RunWriter.__init__

    def init(self, path: Path, resume: bool = False) -> None:
        real_init(self, path, resume)
        self._requests = _FillingFile(self._requests, 20_000)

    monkeypatch.setattr(rundir.RunWriter, "__init__", init)
    stub = stub_server()
    out = tmp_path / "run"
    with pytest.raises(ResultsError, match="No space left on device") as info:
        servemark.bench(servemark.BenchConfig(
            base_url=stub.base_url, num_requests=2000, input_len=16, output_len=16,
            concurrency=[4], output_dir=out, server_metrics=False))
    assert "free disk space" in info.value.one_line()
    loaded = load_records(out)
    size = (out / "requests.jsonl").stat().st_size
    assert size == 20_000  # every byte that fitted was written
    # the cut tears the last line unless it fell at a line's end or just after a closing brace
    data = (out / "requests.jsonl").read_bytes()
    tail = data[data.rfind(b"\n") + 1:]
    assert len(loaded.records) >= 5 and loaded.torn_lines == (1 if tail and not _parses(tail) else 0)
    # the run is marked failed (summary.json had room) and the request ids written are distinct
    assert servemark_status(out) == "failed"
    assert len({r.request_id for r in loaded.records}) == len(loaded.records)
    # space freed: the run resumes from what was kept and completes, each request once
    monkeypatch.setattr(rundir.RunWriter, "__init__", real_init)
    result = resume_bench(out)
    assert not result.partial and result.points[0].completed == 2000
    final = load_records(out)
    assert final.torn_lines == 0
    assert sorted(r.request_id for r in final.records) == list(range(2000))


def servemark_status(run_dir: Path) -> str:
    return str(rundir.load_summary(run_dir)["status"])
