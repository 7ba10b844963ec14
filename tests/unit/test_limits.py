"""Open-file limits are raised when they can be, and a clear error says what to do otherwise."""

from __future__ import annotations

import resource
import subprocess
import sys

from servemark.load.limits import SPARE_FDS, ensure_open_files
from tests.conftest import SRC


def test_enough_already() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert ensure_open_files(10) == soft


def _in_child(code: str) -> subprocess.CompletedProcess[str]:
    """Limits are per process: change them in a child, never in the test runner."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(SRC)})


def test_soft_limit_raised_up_to_the_hard_limit() -> None:
    r = _in_child(
        "import resource\n"
        "from servemark.load.limits import ensure_open_files\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 4096))\n"
        "print(ensure_open_files(1000), resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n")
    assert r.returncode == 0, r.stderr
    got, soft = map(int, r.stdout.split())
    assert got == soft >= 1000 + SPARE_FDS


def test_beyond_the_hard_limit_is_a_clear_error() -> None:
    r = _in_child(
        "import resource\n"
        "from servemark.load.limits import ensure_open_files\n"
        "from servemark.errors import ConfigError\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 512))\n"
        "try:\n"
        "    ensure_open_files(5000)\n"
        "except ConfigError as exc:\n"
        "    print(exc.one_line())\n")
    assert r.returncode == 0, r.stderr
    assert "5000 concurrent streams need about 5064 open files" in r.stdout
    assert "may open only 512" in r.stdout and "ulimit -n" in r.stdout

