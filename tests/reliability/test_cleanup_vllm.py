"""`kill -9` of `servemark serve` while a real vLLM CPU server loads leaves the server (API server
and engine core) running; `servemark cleanup` finds it in the registry and stops its whole tree.
(Killed once the engine core exists, not once ready: the same tree, a shorter test.)"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import psutil
import pytest

from tests.deploy_helpers import VLLM_FLAGS, cli_env, leftovers, run, servemark, wait_for

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


def _pythons(pgids: list[int]) -> list:  # type: ignore[type-arg]
    """The group's Python processes (API server, engine core): vLLM also runs short-lived tools
    such as ``lscpu`` in the group, which must not pass for the engine core."""
    out = []
    for p in leftovers(pgids, 0):
        try:
            if p.name().startswith(("python", "VLLM")):
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def test_kill9_serve_then_cleanup_real_vllm(tiny_model: Path, tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    out = tmp_path / "serve"
    proc = servemark("serve", str(tiny_model), "--served-model-name", "tiny", "--device", "cpu",
                     "--ready-timeout", "900", "--output-dir", str(out), "--", *VLLM_FLAGS,
                     env=env)
    pgids: list[int] = []
    try:
        folder = tmp_path / "state" / "owned"
        wait_for(lambda: folder.exists() and any(folder.glob("*.json")), 120, "the record")
        (entry,) = [json.loads(p.read_text()) for p in folder.glob("*.json")]
        pgids = [entry["server"]["pid"]]
        wait_for(lambda: len(_pythons(pgids)) >= 2, 300, "vLLM's engine core process")
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        proc.kill()
        proc.wait(10)
        time.sleep(2)
        left = leftovers(pgids, 0)
        assert len(left) >= 2, left  # API server and engine core outlived servemark
        res = run("cleanup", env=env, timeout=120)
        assert res.returncode == 0, res.stderr
        assert f"pid {pgids[0]}" in res.stderr
        assert leftovers(pgids) == []
        assert list((tmp_path / "state" / "owned").glob("*")) == []
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(60)
        for p in leftovers(pgids, 0):
            p.kill()
