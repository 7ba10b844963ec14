"""Torch profiler trace summary: self time per operator, checked against torch's own numbers."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from servemark.profile.torchprof import find_traces, summarize_events, summarize_trace
from tests.conftest import need


def test_self_time_subtracts_nested_operators() -> None:
    events = [
        {"ph": "X", "cat": "user_annotation", "name": "step", "ts": 0, "dur": 100, "pid": 1, "tid": 1},
        {"ph": "X", "cat": "cpu_op", "name": "aten::linear", "ts": 10, "dur": 50, "pid": 1, "tid": 1},
        {"ph": "X", "cat": "cpu_op", "name": "aten::mm", "ts": 15, "dur": 40, "pid": 1, "tid": 1},
        {"ph": "X", "cat": "cpu_op", "name": "aten::add", "ts": 70, "dur": 10, "pid": 1, "tid": 1},
        {"ph": "X", "cat": "cpu_op", "name": "aten::mm", "ts": 5, "dur": 20, "pid": 1, "tid": 2},
        {"ph": "X", "cat": "kernel", "name": "gemm", "ts": 20, "dur": 30, "pid": 0, "tid": 7},
        {"ph": "i", "cat": "cpu_op", "name": "marker", "ts": 1, "pid": 1, "tid": 1},
        {"ph": "X", "cat": "python_function", "name": "py", "ts": 0, "dur": 999, "pid": 1, "tid": 1},
    ]
    s = summarize_events(events)
    by = {o.name: o for o in s.ops}
    assert by["step"].self_us == 100 - 50 - 10
    assert by["aten::linear"].self_us == 10
    assert by["aten::mm"].self_us == 60 and by["aten::mm"].calls == 2  # both threads
    assert by["gemm"].self_us == 30
    assert "py" not in by and "marker" not in by
    assert [o.name for o in s.top(2)] == ["aten::mm", "step"]
    assert s.span_us == 100


def test_matches_torch_key_averages(tmp_path: Path) -> None:
    need(_have_torch(), "torch not installed")
    import torch

    x = torch.randn(128, 128)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(20):
            y = torch.nn.functional.linear(x, x)
            y = torch.relu(y + 1)
    path = tmp_path / "w.pt.trace.json"
    prof.export_chrome_trace(str(path))
    gz = tmp_path / "w2.pt.trace.json.gz"
    with open(path, "rb") as src, gzip.open(gz, "wb") as dst:
        dst.write(src.read())
    ours = {o.name: o for o in summarize_trace(gz).ops}
    theirs = {e.key: e for e in prof.key_averages()}
    for name in ("aten::linear", "aten::addmm", "aten::mm", "aten::relu", "aten::add"):
        if name not in theirs:
            continue
        assert ours[name].calls == theirs[name].count
        assert ours[name].self_us == pytest.approx(theirs[name].self_cpu_time_total, rel=0.01, abs=2)
        assert ours[name].total_us == pytest.approx(theirs[name].cpu_time_total, rel=0.01, abs=2)
    assert set(find_traces(tmp_path)) == {path, gz}
    assert json.loads(path.read_text())["traceEvents"]


def _have_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None
