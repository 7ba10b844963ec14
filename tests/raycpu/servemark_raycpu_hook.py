"""TEST ONLY: make vLLM's CPU platform look Ray-capable, so the Ray executor runs on CPU nodes.

vLLM's Ray executor places one worker per Ray "GPU" (``ray_device_key``); the CPU platform
leaves that key empty and the executor refuses it. When ``vllm.platforms.cpu`` is imported this
sets ``CpuPlatform.ray_device_key = "GPU"``; the test's ``ray start`` gives each node
``--num-gpus 1``. Loaded by the ``.pth`` file ``tests/raycpu/__init__.py`` installs, in every
process of the test venv (Ray workers included) whose environment names this directory.
Never part of the product.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

TARGET = "vllm.platforms.cpu"


class _PatchCpuPlatform(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
                  ) -> ModuleSpec | None:
        if name != TARGET:
            return None
        sys.meta_path.remove(self)  # find the real module, once
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        real_exec: Any = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            real_exec(module)
            module.CpuPlatform.ray_device_key = "GPU"

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if TARGET in sys.modules:
    sys.modules[TARGET].CpuPlatform.ray_device_key = "GPU"
elif not any(isinstance(f, _PatchCpuPlatform) for f in sys.meta_path):
    sys.meta_path.insert(0, _PatchCpuPlatform())
