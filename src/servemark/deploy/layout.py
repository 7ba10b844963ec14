"""Where each replica runs inside an allocation (pure): node indices, GPU ids, port.

A replica that fits on one node (TP×PP ≤ GPUs per node) runs there with its own GPU slice;
replicas are spread round-robin so every node serves. A replica larger than a node takes whole
nodes and runs on a Ray cluster of its own (head = its first node).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from servemark.deploy.cluster_spec import ClusterSpec


@dataclass(frozen=True, slots=True)
class Replica:
    index: int
    nodes: tuple[int, ...]  # indices into the allocation's node list; nodes[0] is the head
    gpu_ids: tuple[int, ...] | None  # CUDA_VISIBLE_DEVICES on a shared node; None = all / CPU
    port: int

    @property
    def multinode(self) -> bool:
        return len(self.nodes) > 1

    @property
    def head(self) -> int:
        return self.nodes[0]

    @property
    def workers(self) -> tuple[int, ...]:
        return self.nodes[1:]


def nodes_per_replica(spec: ClusterSpec) -> int:
    if spec.nodes_per_replica is not None:
        return spec.nodes_per_replica
    gpn, gpr = spec.gpus_per_node, spec.gpus_per_replica
    if gpn == 0 or gpr <= gpn:
        return 1
    if gpr % gpn:
        raise ValueError(
            f"TP×PP = {gpr} GPUs does not fill whole nodes of {gpn} GPUs; choose TP×PP as a "
            f"multiple of gpus_per_node (e.g. TP {gpn} × PP {-(-gpr // gpn)})")
    return gpr // gpn


def plan_layout(spec: ClusterSpec) -> list[Replica]:
    """The replicas of a spec, or ValueError saying why the numbers do not fit."""
    npr = nodes_per_replica(spec)
    gpn, gpr = spec.gpus_per_node, spec.gpus_per_replica
    if npr > 1:
        if gpn and gpr != npr * gpn:
            raise ValueError(f"nodes_per_replica={npr} × {gpn} GPUs ≠ TP×PP = {gpr}")
        if spec.nodes != spec.replicas * npr:
            raise ValueError(
                f"{spec.replicas} replica(s) of {npr} nodes need nodes={spec.replicas * npr}, "
                f"not {spec.nodes}")
        return [Replica(r, tuple(range(r * npr, (r + 1) * npr)), None, spec.port)
                for r in range(spec.replicas)]
    if spec.replicas < spec.nodes:
        raise ValueError(f"{spec.nodes} nodes for {spec.replicas} single-node replica(s) would "
                         f"leave nodes idle; set nodes={spec.replicas} or replicas={spec.nodes}")
    per_node = -(-spec.replicas // spec.nodes)
    if gpn and per_node * gpr > gpn:
        raise ValueError(
            f"{spec.replicas} replicas of TP×PP = {gpr} GPUs do not fit on {spec.nodes} node(s) "
            f"of {gpn} GPUs; raise nodes to {-(-spec.replicas // (gpn // gpr))}")
    out = []
    for r in range(spec.replicas):
        node, slot = r % spec.nodes, r // spec.nodes
        gpus = tuple(range(slot * gpr, (slot + 1) * gpr)) if gpn and per_node > 1 else None
        out.append(Replica(r, (node,), gpus, spec.port + slot))
    return out
