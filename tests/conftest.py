"""Shared fixtures: the tiny model, one real vLLM CPU server per session, stub servers.

With CI=true a missing dependency (vLLM) is a failure, never a skip.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from servemark.deploy.local import VllmServer
from servemark.stub.process import StubProcess

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SERVED_NAME = "tiny"
SRC = Path(__file__).resolve().parents[1] / "src"


def need(condition: bool, reason: str) -> None:
    """Skip locally, fail in CI: real-component tests must run there."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def have_vllm() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    need(have_vllm(), "vLLM (and torch/transformers) not installed")
    from servemark.demo.tinymodel import build_tiny_model

    return build_tiny_model()


@pytest.fixture(scope="session")
def vllm_server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    """One real vLLM CPU server on the tiny model for the whole session."""
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    server = VllmServer(
        str(tiny_model),
        served_model_name=SERVED_NAME,
        extra_args=["--max-model-len", "2048", "--enforce-eager", "--dtype", "bfloat16"],
        env={"HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"},
        log_path=log,
    )
    with server:
        server.start(ready_timeout_s=900)
        yield server


@pytest.fixture
def stub_server() -> Iterator[Callable[..., StubProcess]]:
    """Factory: ``stub_server("--ttft", "0.05")`` starts a stub; all are stopped after the test."""
    started: list[StubProcess] = []

    def start(*args: str) -> StubProcess:
        stub = StubProcess(*args)
        started.append(stub)
        return stub

    yield start
    for stub in started:
        stub.stop()
