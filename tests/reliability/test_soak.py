"""Soak (bounded): 512 concurrent streams against the paced stub for 15 s. The client's open
file descriptors stay bounded by the concurrency, and its memory stays flat apart from the
records it keeps for the summary (about 2 KiB each at 32 tokens; a per-request leak of a
connection, buffer or task would be several times that). Longer runs: benchmarks/soak.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmarks.soak import soak

pytestmark = pytest.mark.slow

CONCURRENCY = 512


def test_soak_memory_flat_and_fds_bounded(tmp_path: Path) -> None:
    result = soak(CONCURRENCY, 15.0, out_dir=tmp_path)
    print("\n".join(result.lines()))
    assert result.failed == 0
    assert result.completed > 4 * CONCURRENCY  # each stream was reused many times
    assert result.fds_max <= CONCURRENCY + 64  # one socket per stream, plus a few files
    assert result.growth_per_1k_requests_kib < 4096
    assert result.rss_max_mib < 400
