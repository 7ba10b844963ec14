"""Fixtures for real-cluster tests: private SLURMs (their own munged, conf, ports; see
slurmd_setup.py) and a private state directory for servemark's job records.

``local_slurm`` is one node for the session. ``two_node_slurm`` adds a node in a network
namespace for one module; it points ``SLURM_CONF`` at itself while it lives, then back."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import need
from tests.integration.cluster.slurmd_setup import LocalSlurm, SlurmNode, have_slurm
from tests.netns import NetNS, need_netns, netns  # noqa: F401 (the netns fixture)


def _use_conf(conf: Path | None) -> Path | None:
    """Point clients (servemark's slurm commands inherit the environment) at ``conf``."""
    old = os.environ.get("SLURM_CONF")
    if conf is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = str(conf)
    return Path(old) if old else None


@pytest.fixture(scope="session")
def local_slurm() -> Iterator[LocalSlurm]:
    """A one-node SLURM on this host; stops only the daemons it started."""
    need(have_slurm(), "SLURM not installed (apt-get install slurm-wlm munge)")
    need(os.geteuid() == 0, "starting SLURM daemons needs root")
    slurm = LocalSlurm().start()
    old = _use_conf(slurm.conf)
    try:
        yield slurm
    finally:
        _use_conf(old)
        slurm.stop()


@dataclass
class TwoNodes:
    slurm: LocalSlurm
    ns: NetNS
    head: str  # this host's node (first in the allocation)
    other: str  # the namespace's node


@pytest.fixture(scope="module")
def two_node_slurm() -> Iterator[TwoNodes]:
    """Two SLURM nodes: this host at the veth address and a network namespace at its peer."""
    need(have_slurm(), "SLURM not installed (apt-get install slurm-wlm munge)")
    need(os.geteuid() == 0, "starting SLURM daemons needs root")
    ns = need_netns()
    host = socket.gethostname()
    other = f"{host}-ns"  # sorts after the host: the batch step runs on the host
    try:
        slurm = LocalSlurm([SlurmNode(host, ns.host_ip), SlurmNode(other, ns.peer_ip, ns.enter())],
                           ctld_addr=ns.host_ip).start()
    except BaseException:
        ns.down()
        raise
    old = _use_conf(slurm.conf)
    try:
        yield TwoNodes(slurm, ns, host, other)
    finally:
        _use_conf(old)
        slurm.stop()
        ns.down()


@pytest.fixture
def job_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "state"
    monkeypatch.setenv("SERVEMARK_STATE", str(d))
    monkeypatch.setenv("SERVEMARK_STATE_DIR", str(d))  # the older name, still read
    return d
