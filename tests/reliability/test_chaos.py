"""Chaos: each fault the stub can inject ends as a recorded, classified failure with timing; the
run finishes and the summary counts errors by kind. Both HTTP clients are exercised."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import servemark
from servemark.store.rundir import load_records
from servemark.stub.server import GIANT_CHARS

# fault → how the record classifies it (None: a valid, if unusual, response that must succeed)
EXPECTED = {
    "http500": "http_status",
    "http503": "http_status",
    "http429": "http_status",
    "reset": "connection",
    "drop": "connection",
    "malformed": "malformed",
    "bad_utf8": "malformed",
    "no_done": "truncated",
    "stall": "timeout",
    "hang": "timeout",
    "giant": None,
}


@pytest.mark.parametrize("client", ["fast", "aiohttp"])
@pytest.mark.parametrize("fault", sorted(EXPECTED))
def test_fault_is_a_classified_recorded_failure(stub_server, tmp_path: Path, fault: str,
                                                client: str) -> None:
    # every 2nd request is faulty; a reset on a pooled connection before any response byte is
    # (by design) re-sent once on a fresh one, so that fault is injected on every request
    every = 1 if fault == "reset" else 2
    stub = stub_server("--fault", fault, "--fault-every", str(every))
    out = tmp_path / "run"
    result = servemark.bench(servemark.BenchConfig(
        base_url=stub.base_url, num_requests=6, input_len=16, output_len=16, concurrency=[3],
        output_dir=out, read_timeout_s=0.5, server_metrics=False, http_client=client))
    point = result.points[0]
    recs = load_records(out).records
    assert len(recs) == 6 and len({r.request_id for r in recs}) == 6
    kind = EXPECTED[fault]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete"
    if kind is None:
        assert point.completed == 6 and point.failed == 0
        assert max(r.output_chars or 0 for r in recs) >= GIANT_CHARS
        return
    failed = 6 // every
    assert point.completed == 6 - failed and point.failed == failed
    assert point.errors_by_kind == {kind: failed}
    assert summary["points"][0]["errors_by_kind"] == {kind: failed}
    for r in recs:
        assert r.end_s >= r.start_s  # timing kept for failures too
        if not r.ok:
            assert r.error_kind == kind and r.error
    if kind == "timeout":  # the failure took about the read timeout, not forever
        assert all(0.4 <= r.end_s - r.start_s < 5 for r in recs if not r.ok)
