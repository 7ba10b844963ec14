"""``--ray-address``: the client workers of ``--workers`` as Ray actors on a Ray cluster.

Same jobs, same central schedule, same merging as local worker processes: each actor runs the
worker loop of :mod:`servemark.load.workers` and talks to the parent over a TCP connection it
opens back to it (``multiprocessing.connection`` with a random per-run key), the same protocol as
the local pipes; Ray only places and starts the actors (spread over the nodes) and stops them.
Clocks: on the parent's machine the monotonic clock is shared (same boot id); on another machine
the worker estimates its clock's offset from the parent's with a few ping-pongs (the sample with
the shortest round trip, error at most half of it) and shifts the schedule and timestamps by it.
servemark must be importable on every node (the same environment or image on the nodes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import replace
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import Any

from servemark.errors import ConfigError, DependencyError
from servemark.load.runner import LiveCounters, RunControl
from servemark.load.workers import OnLines, WorkerJob, WorkersOutcome, _worker_main, drive_workers
from servemark.metrics.accumulate import PointAccumulator
from servemark.rayinit import init_keeping_signals

CONNECT_TIMEOUT_S = 120.0  # actors' processes start and import servemark within this
PINGS = 8


def boot_id() -> str:
    """Identifies this kernel's boot: equal boot ids share one CLOCK_MONOTONIC."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def clock_offset(samples: Sequence[tuple[float, float, float]]) -> float:
    """Worker clock − parent clock from (worker send, parent reading, worker receive) samples:
    the one with the shortest round trip, assuming the parent read its clock half-way (pure)."""
    sent, parent, received = min(samples, key=lambda s: s[2] - s[0])
    return (sent + received) / 2 - parent


class ClientActor:
    """The Ray actor (decorated with ``ray.remote`` when used): one worker, one node."""

    def node(self) -> str:
        import ray

        return str(ray.util.get_node_ip_address())

    def run(self, job: WorkerJob, address: tuple[str, int], authkey: bytes) -> None:
        conn = Client(address, authkey=authkey)
        try:
            conn.send(("hello", boot_id()))
            kind, same_clock = conn.recv()
            offset = 0.0
            if not same_clock:
                samples = []
                for _ in range(PINGS):
                    t_send = time.perf_counter()
                    conn.send(("ping", None))
                    _, parent = conn.recv()
                    samples.append((t_send, parent, time.perf_counter()))
                offset = clock_offset(samples)
            _worker_main(replace(job, clock_offset_s=offset), conn, f"w{job.index}@{self.node()}")
        finally:
            conn.close()


class RayCluster:
    """A connection to a Ray cluster for the whole benchmark (``ray.init`` once; shut down at
    the end only if we initialized it)."""

    def __init__(self, address: str) -> None:
        try:
            import ray
        except ImportError as exc:
            raise DependencyError("--ray-address needs Ray", "pip install 'ray[default]'") from exc
        self.ray = ray
        self.address = address
        self._own = False

    def __enter__(self) -> RayCluster:
        if not self.ray.is_initialized():
            try:
                init_keeping_signals(self.ray, address=self.address, log_to_driver=False,
                                     logging_level=logging.WARNING)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ConfigError(f"cannot connect to the Ray cluster at {self.address}: {exc}",
                                  "start it (servemark ray up / ray start --head) and pass its "
                                  "GCS address HOST:PORT") from exc
            self._own = True
        self.node_ip = str(self.ray.util.get_node_ip_address())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._own:
            self.ray.shutdown()

    async def run_point(self, jobs: list[WorkerJob], on_lines: OnLines, control: RunControl,
                        live: LiveCounters, accumulator: PointAccumulator) -> WorkersOutcome:
        """One load point on ``len(jobs)`` actors spread over the cluster's nodes."""
        ray = self.ray
        loop = asyncio.get_running_loop()
        authkey = secrets.token_bytes(32)
        listener = Listener(("0.0.0.0", 0), authkey=authkey)  # noqa: S104 - actors on other nodes
        address = (self.node_ip, listener.address[1])
        actor_cls = ray.remote(num_cpus=1, max_restarts=0)(ClientActor)
        actors = [actor_cls.options(scheduling_strategy="SPREAD").remote() for _ in jobs]
        runs = [a.run.remote(job, address, authkey) for a, job in zip(actors, jobs, strict=True)]
        conns: list[Connection] = []
        try:
            accepting = loop.run_in_executor(None, _accept, listener, len(jobs), conns)
            failed = asyncio.ensure_future(_first_failure(runs))
            done, _ = await asyncio.wait({accepting, failed}, timeout=CONNECT_TIMEOUT_S,
                                         return_when=asyncio.FIRST_COMPLETED)
            if accepting not in done:
                listener.close()  # unblocks the accepting thread
                with contextlib.suppress(Exception):
                    await accepting
                cause = failed.exception() if failed.done() else None
                raise ConfigError(
                    f"{len(jobs) - len(conns)} of {len(jobs)} Ray client actors did not connect "
                    f"back to {address[0]}:{address[1]}" + (f": {cause}" if cause else ""),
                    "each actor needs one free CPU on the cluster, servemark importable on every "
                    "node, and a route from the nodes to this machine's address")
            failed.cancel()
            for conn in conns:
                _clock_handshake(conn)
            outcome = await drive_workers(conns, on_lines, control, live, accumulator)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*(_as_future(r) for r in runs)), 10)
            return outcome
        finally:
            listener.close()
            for conn in conns:
                conn.close()
            for actor in actors:
                with contextlib.suppress(Exception):
                    ray.kill(actor)


def _accept(listener: Listener, n: int, into: list[Connection]) -> None:
    while len(into) < n:
        into.append(listener.accept())


def _clock_handshake(conn: Connection) -> None:
    """The parent's side: say whether the clocks are shared, answer the pings if not."""
    kind, their_boot = conn.recv()
    same = bool(their_boot) and their_boot == boot_id()
    conn.send(("clock", same))
    if not same:
        for _ in range(PINGS):
            conn.recv()
            conn.send(("pong", time.perf_counter()))


def _as_future(ref: Any) -> asyncio.Future[Any]:
    return asyncio.wrap_future(ref.future())


async def _first_failure(runs: list[Any]) -> None:
    """Returns (raising the actor's error) as soon as any actor's run fails; else waits."""
    pending = {_as_future(r) for r in runs}
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for fut in done:
            fut.result()
    await asyncio.Event().wait()
