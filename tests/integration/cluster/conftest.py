"""Fixtures for real-cluster tests: a one-node SLURM (started here or reused) and a private state
directory for servemark's job records."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need
from tests.integration.cluster.slurmd_setup import LocalSlurm, have_slurm


@pytest.fixture(scope="session")
def local_slurm() -> Iterator[LocalSlurm]:
    """munged + slurmctld + slurmd on this host; stops only the daemons it started."""
    need(have_slurm(), "SLURM not installed (apt-get install slurm-wlm munge)")
    need(os.geteuid() == 0, "starting SLURM daemons needs root")
    slurm = LocalSlurm().start()
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(slurm.conf)
    try:
        yield slurm
    finally:
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        slurm.stop()


@pytest.fixture
def job_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "state"
    monkeypatch.setenv("SERVEMARK_STATE_DIR", str(d))
    return d
