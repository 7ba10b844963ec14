"""``servemark ray up/down/status``: one Ray node we own, stopped by PID (never ``ray stop``)."""

from __future__ import annotations

from typing import Annotated

import typer

from servemark.cli.common import err, handle_errors, out
from servemark.deploy import raynode

ray_app = typer.Typer(help="Start and stop a Ray head or worker on this node (only ours).",
                      no_args_is_help=True)


@ray_app.command("up")
@handle_errors
def ray_up(
    head: Annotated[bool, typer.Option("--head", help="Start a head node")] = False,
    address: Annotated[str | None, typer.Option("--address", help="Join the head at HOST:PORT")] = None,
    name: Annotated[str | None, typer.Option(help="Record name (default: head / worker)")] = None,
    port: Annotated[int | None, typer.Option(help="Head GCS port (default: a free one above Ray's worker ports)")] = None,
    node_ip: Annotated[str | None, typer.Option("--node-ip", help="This node's IP for Ray")] = None,
    interface: Annotated[str | None, typer.Option(help="Take the node IP from this interface (hsn0, ib0)")] = None,
    hostname_suffix: Annotated[str | None, typer.Option(
        help="Take the node IP from the short host name plus this suffix (.hsn.cm.aurora.alcf.anl.gov)")] = None,
    num_cpus: Annotated[int | None, typer.Option(help="CPUs for Ray (default: our affinity mask)")] = None,
    num_gpus: Annotated[int | None, typer.Option(help="GPUs for Ray (default: the visible GPUs)")] = None,
    temp_dir: Annotated[str | None, typer.Option(help="Ray temp dir (default: short, per run)")] = None,
    num_nodes: Annotated[int | None, typer.Option(help="Nodes the cluster should reach")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until --num-nodes nodes are in")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait at most")] = 120.0,
) -> None:
    """Start a Ray head (--head) or worker (--address) and record its processes."""
    node = raynode.up(head=head, address=address, name=name, port=port, node_ip_address=node_ip,
                      interface=interface, hostname_suffix=hostname_suffix, num_cpus=num_cpus,
                      num_gpus=num_gpus, temp_dir=temp_dir,
                      num_nodes=num_nodes if wait else None, timeout_s=timeout)
    out.print(node.address, highlight=False)
    err.print(f"Ray {node.role} {node.name!r} up (pid {node.pid}, {len(node.children) + 1} processes, "
              f"temp {node.temp_dir}); stop it with: servemark ray down {node.name}", highlight=False)
    if node.role == "head":
        err.print(f"workers join with: servemark ray up --address {node.address}", highlight=False)


@ray_app.command("down")
@handle_errors
def ray_down(name: Annotated[str | None, typer.Argument(help="Which node (default: the only one)")] = None) -> None:
    """Stop exactly the processes `ray up` started (and their children)."""
    node = raynode.get(name)
    n = raynode.down(node)
    err.print(f"stopped Ray {node.role} {node.name!r} ({n} processes alive before)", highlight=False)


@ray_app.command("status")
@handle_errors
def ray_status() -> None:
    """The Ray nodes started here, alive or not, and the node count of their cluster."""
    nodes = raynode.load_all()
    if not nodes:
        err.print("no Ray node started here")
        return
    for node in nodes:
        state = "alive" if node.alive() else "dead"
        count = f", cluster has {raynode.cluster_nodes(node.address)} nodes" if node.alive() else ""
        out.print(f"{node.name}\t{node.role}\t{node.address}\tpid {node.pid}\t{state}{count}",
                  highlight=False)
