"""The environment of the vLLM processes servemark starts: its start-up hook leads PYTHONPATH.

Why: the hook (``vllmsite/sitecustomize.py``) asks Linux for the AMX tile permission in every
Python process of the server, without which vLLM's CPU attention dies with SIGILL on CPUs that
advertise AMX. Nothing else on the path changes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

SITE_DIR = Path(__file__).resolve().parent / "vllmsite"


def with_vllm_site(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with :data:`SITE_DIR` first on PYTHONPATH (once)."""
    out = dict(env)
    parts = [p for p in out.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(SITE_DIR)]
    out["PYTHONPATH"] = os.pathsep.join([str(SITE_DIR), *parts])
    return out
