"""``servemark serve`` when vLLM cannot start: a bad flag, a missing model, Ctrl-C while loading.
Real vLLM processes (each stops early, so these are cheap): clear errors with the log lines that
explain them, a non-zero exit code, and nothing left running."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import have_vllm, need
from tests.deploy_helpers import VLLM_FLAGS, cli_env, leftovers, run, servemark, wait_for

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


def test_bad_vllm_flag(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "bad-flag"
    res = run("serve", str(tiny_model), "--output-dir", str(out), "--",
              *VLLM_FLAGS, "--no-such-flag", "3", env=cli_env(tmp_path))
    assert res.returncode == 1, res.stderr
    assert "exited with code" in res.stderr
    assert "--no-such-flag" in res.stderr  # vLLM's own complaint, from the log
    assert (out / "server.log").exists() and "Traceback (most recent" not in res.stderr.split("error:")[-1]


def test_missing_model(tmp_path: Path) -> None:
    need(have_vllm(), "vLLM not installed")
    out = tmp_path / "missing"
    missing = tmp_path / "no-such-model"
    res = run("serve", str(missing), "--output-dir", str(out), "--", *VLLM_FLAGS,
              env=cli_env(tmp_path))
    assert res.returncode == 1, res.stderr
    assert "exited with code" in res.stderr and str(out / "server.log") in res.stderr
    # the explaining log lines name the model that could not be found
    log_lines = res.stderr.split("error:")[0]
    assert "no-such-model" in log_lines


def test_ctrl_c_while_loading_stops_everything(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "interrupted"
    proc = servemark("serve", str(tiny_model), "--output-dir", str(out), "--", *VLLM_FLAGS,
                     env=cli_env(tmp_path))
    wait_for(lambda: (out / "server.log").exists() and (out / "server.log").stat().st_size > 0,
             300, "vLLM to start logging")
    children = psutil.Process(proc.pid).children(recursive=True)
    assert children, "servemark started no server"
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert leftovers([c.pid for c in children]) == []
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
