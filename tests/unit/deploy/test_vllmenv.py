"""The start-up hook of the vLLM processes we launch: first on PYTHONPATH once, asks for the AMX
tile permission where the CPU has AMX (vLLM's CPU attention dies with SIGILL without it), and
still runs the environment's own sitecustomize."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from servemark.deploy import jobtools
from servemark.deploy.vllmenv import SITE_DIR, with_vllm_site

_PERM = """
import ctypes, os, sys
v = ctypes.c_uint64(0)
if sys.platform == "linux" and os.uname().machine == "x86_64":
    ctypes.CDLL(None).syscall(158, 0x1022, ctypes.byref(v))  # ARCH_GET_XCOMP_PERM
print(bool(v.value & (1 << 18)), getattr(sys.modules.get("sitecustomize"), "MARK", None))
"""


def _cpu_has_amx() -> bool:
    try:
        return " amx_tile" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def test_site_dir_leads_pythonpath_once() -> None:
    env = with_vllm_site({"PYTHONPATH": f"/a{os.pathsep}{SITE_DIR}{os.pathsep}/b", "X": "1"})
    assert env["PYTHONPATH"].split(os.pathsep) == [str(SITE_DIR), "/a", "/b"]
    assert env["X"] == "1"
    assert with_vllm_site({})["PYTHONPATH"] == str(SITE_DIR)
    assert (SITE_DIR / "sitecustomize.py").is_file()


def test_hook_asks_for_amx_and_chains_to_the_next_sitecustomize(tmp_path: Path) -> None:
    own = tmp_path / "own"
    own.mkdir()
    (own / "sitecustomize.py").write_text("MARK = 'theirs'\n")
    env = with_vllm_site({**os.environ, "PYTHONPATH": str(own)})
    out = subprocess.run([sys.executable, "-c", _PERM], env=env, capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    assert out[1] == "theirs"  # the environment's own hook still ran
    if sys.platform == "linux" and os.uname().machine == "x86_64":
        assert out[0] == str(_cpu_has_amx())
    # without the hook a fresh process has no tile permission
    plain = subprocess.run([sys.executable, "-c", _PERM], env={**os.environ, "PYTHONPATH": ""},
                           capture_output=True, text=True, timeout=60, check=True).stdout.split()
    assert plain[0] == "False"


def test_jobtools_prints_the_pythonpath(capsys, monkeypatch) -> None:
    monkeypatch.setenv("PYTHONPATH", "/x")
    assert jobtools.main(["vllm-pythonpath"]) == 0
    assert capsys.readouterr().out.strip() == f"{SITE_DIR}{os.pathsep}/x"
