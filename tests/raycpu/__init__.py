"""TEST ONLY: install the vLLM-on-Ray-CPU import hook into the test venv (see
servemark_raycpu_hook.py). The ``.pth`` line acts only in processes whose environment has
``SERVEMARK_TEST_RAY_CPU`` (this directory), so other users of the same venv are untouched."""

from __future__ import annotations

import sysconfig
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HOOK_DIR = Path(__file__).resolve().parent
ENV = "SERVEMARK_TEST_RAY_CPU"
PTH_NAME = "servemark_test_raycpu.pth"
PTH_LINE = (f"import os, sys; d = os.environ.get({ENV!r}); d and (sys.path.append(d) or "
            "__import__('servemark_raycpu_hook'))\n")


@contextmanager
def raycpu_hook() -> Iterator[dict[str, str]]:
    """Write the .pth into this interpreter's site-packages; yield the env that activates it."""
    pth = Path(sysconfig.get_paths()["purelib"]) / PTH_NAME
    pth.write_text(PTH_LINE)
    try:
        yield {ENV: str(HOOK_DIR)}
    finally:
        pth.unlink(missing_ok=True)
