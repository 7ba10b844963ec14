"""What hardware a measurement ran on: GPU name and count (torch.cuda), else the CPU model.

Detection runs in a short-lived child process (``python -m servemark.suites.hardware``) so the
parent never initializes CUDA — that would hold GPU memory for the whole sweep.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import urlparse


@dataclass(frozen=True, slots=True)
class Hardware:
    name: str
    count: int  # GPUs visible, or CPU sockets
    kind: str  # "gpu" | "cpu" | "unknown"

    def used(self, tp: int, pp: int) -> int:
        """Devices one engine uses: TP × PP GPUs; on CPU, the sockets."""
        return tp * pp if self.kind == "gpu" else self.count


UNKNOWN = Hardware("unknown", 1, "unknown")


def parse_cpuinfo(text: str) -> Hardware:
    """CPU model and socket count from /proc/cpuinfo (pure)."""
    model, sockets = None, set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key in ("model name", "Model", "cpu model") and model is None and value:
            model = value
        elif key == "physical id":
            sockets.add(value)
    return Hardware(model or "unknown CPU", max(len(sockets), 1), "cpu")


def _detect_here() -> Hardware:
    try:
        import torch

        if torch.cuda.is_available() and torch.cuda.device_count() > 0:
            names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            return Hardware(names[0], len(names), "gpu")
    except Exception:  # no torch, no driver: fall back to the CPU
        pass
    try:
        return parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        import platform

        return Hardware(platform.processor() or platform.machine() or "unknown CPU", 1, "cpu")


@cache
def detect(python: str = sys.executable) -> Hardware:
    """This machine's accelerator (or CPU), detected in a child process; cached."""
    try:
        out = subprocess.run([python, "-m", "servemark.suites.hardware"], capture_output=True,
                             text=True, timeout=120, env=child_env(), check=True).stdout
        data = json.loads(out.strip().splitlines()[-1])
        return Hardware(str(data["name"]), int(data["count"]), str(data["kind"]))
    except (subprocess.SubprocessError, OSError, ValueError, KeyError, IndexError):
        return _detect_here_cpu_only()


def _detect_here_cpu_only() -> Hardware:
    try:
        return parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        return UNKNOWN


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Our environment for a child Python that must import servemark (also when run from src/)."""
    import os

    env = dict(os.environ)
    env.update(extra or {})
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    return env


def is_local_url(url: str | None) -> bool:
    host = urlparse(url or "").hostname or ""
    return host in ("localhost", "127.0.0.1", "::1", "0.0.0.0") or host.startswith("127.")


if __name__ == "__main__":
    hw = _detect_here()
    print(json.dumps({"name": hw.name, "count": hw.count, "kind": hw.kind}))
