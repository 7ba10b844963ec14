"""Spread one load point over N client processes, each with its own event loop and connections.

Global exactness comes from the parent: it splits closed-loop concurrency and the request budget
across workers (the shares sum to the totals), and for open loop it draws ONE arrival schedule and
deals the arrivals round-robin, so the union of the workers' sends is exactly the schedule. All
workers start at the same absolute monotonic time (CLOCK_MONOTONIC is system-wide on Linux).
Workers stream finished records back in small batches; the parent writes them as they arrive.
Stop: the parent forwards its first and second interrupt to every worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing as mp
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import orjson

from servemark.client.openai import GenerationOptions, RequestSpec
from servemark.client.request import Target, execute
from servemark.client.transport import Timeouts
from servemark.load.balance import make_picker
from servemark.load.runner import LiveCounters, RunControl, run_point
from servemark.load.schedule import LoadPoint, arrival_offsets
from servemark.metrics.record import RequestRecord
from servemark.workload.base import WorkItem, cycle_pool, requests_of

BATCH_SECONDS = 0.02
START_MARGIN_S = 0.05


@dataclass
class WorkerJob:
    """Everything one worker needs (pickled to the child)."""

    index: int
    point: LoadPoint
    specs: list[WorkItem]
    offsets: list[float] | None
    num_requests: int | None
    duration_s: float | None
    targets: tuple[Target, ...]
    lb_policy: str
    opts: GenerationOptions
    timeouts: Timeouts
    http_client: str
    t0: float
    label: str
    grace_period_s: float
    cycle: bool = False  # duration-bounded closed loop: reuse the prompt pool
    id_stride: int = 1


def split(total: int, parts: int) -> list[int]:
    """``total`` into ``parts`` integers that differ by at most one and sum to ``total``."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def plan_jobs(point: LoadPoint, specs: list[WorkItem], workers: int, num_requests: int | None,
              duration_s: float | None, rng: random.Random,
              common: dict[str, Any]) -> list[WorkerJob]:
    """Deal one load point over ``workers`` processes (pure)."""
    jobs: list[WorkerJob] = []
    if point.is_open_loop:
        assert point.request_rate is not None
        horizon = num_requests if num_requests is not None else len(specs)
        offsets = list(itertools.islice(arrival_offsets(point.request_rate, point.arrival, rng), horizon))
        if duration_s is not None:
            offsets = [o for o in offsets if o < duration_s]
        caps = split(point.max_concurrency, workers) if point.max_concurrency else [None] * workers
        for i in range(workers):
            mine = offsets[i::workers]
            if not mine:
                continue
            sub = LoadPoint(request_rate=point.request_rate, arrival=point.arrival,
                            max_concurrency=caps[i] or None)
            jobs.append(WorkerJob(i, sub, specs[i::workers][: len(mine)], mine, len(mine),
                                  duration_s, **common))
        return jobs
    shares = split(point.concurrency or 1, min(workers, point.concurrency or 1))
    budgets = split(num_requests, len(shares)) if num_requests is not None else [None] * len(shares)
    for i, share in enumerate(shares):
        dealt = specs[i::len(shares)]
        jobs.append(WorkerJob(i, LoadPoint(concurrency=share), dealt, None, budgets[i], duration_s,
                              **common, cycle=num_requests is None, id_stride=len(shares)))
    return jobs


def _worker_main(job: WorkerJob, conn: Connection) -> None:
    """Child process: run its share, stream records back, obey stop messages."""
    import signal

    # Ctrl-C reaches the whole process group; only the parent decides what it means.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import servemark.api  # noqa: F401  (warm imports before the start signal)
    from servemark.client.fasthttp import FastTransport
    from servemark.client.transport import AiohttpTransport

    async def run() -> None:
        loop = asyncio.get_running_loop()
        control = RunControl(job.grace_period_s)
        control.bind(loop)
        max_conn = job.point.concurrency or job.point.max_concurrency or 0
        transport = (FastTransport(max_conn, job.timeouts) if job.http_client == "fast"
                     else AiohttpTransport(max_conn, job.timeouts))
        pending: list[bytes] = []
        last_flush = time.perf_counter()

        def flush() -> None:
            nonlocal last_flush
            if pending:
                conn.send_bytes(b"R" + b"\n".join(pending))
                pending.clear()
            last_flush = time.perf_counter()

        def on_record(rec: RequestRecord) -> None:
            pending.append(orjson.dumps(rec))
            if time.perf_counter() - last_flush > BATCH_SECONDS:
                flush()

        async def periodic_flush() -> None:
            while True:
                await asyncio.sleep(BATCH_SECONDS)
                flush()

        def on_message() -> None:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                control.cancel()
                return
            if msg == "stop":
                control.interrupt()
            elif msg == "cancel":
                control.cancel()

        conn.send(("ready", None))
        kind, start_at = conn.recv()
        loop.add_reader(conn.fileno(), on_message)
        flusher = asyncio.create_task(periodic_flush())

        by_url = {t.base_url: t for t in job.targets}
        picker = make_picker(job.lb_policy, list(by_url))

        async def send(spec: RequestSpec, scheduled: float | None) -> RequestRecord:
            url = picker.acquire()
            try:
                return await execute(transport, by_url[url], spec, job.opts, t0=job.t0,
                                     load_point=job.label,
                                     scheduled_s=None if scheduled is None else scheduled - job.t0)
            finally:
                picker.release(url)

        cpu0 = time.process_time()
        try:
            source = (cycle_pool(job.specs, requests_of(job.specs[0])[0].request_id, job.id_stride)
                      if job.cycle and job.specs else iter(job.specs))
            await run_point(job.point, source, send, on_record,
                            num_requests=job.num_requests, duration_s=job.duration_s,
                            control=control, start_at=start_at,
                            offsets=iter(job.offsets) if job.offsets is not None else None)
        finally:
            flusher.cancel()
            flush()
            loop.remove_reader(conn.fileno())
            await transport.close()
        conn.send(("done", time.process_time() - cpu0))

    with contextlib.suppress(KeyboardInterrupt):  # the parent decides when to stop
        asyncio.run(run())


async def run_point_workers(
    jobs: list[WorkerJob],
    on_record: Callable[[RequestRecord], None],
    control: RunControl,
    live: LiveCounters,
) -> float:
    """Run the jobs in child processes; return the children's total CPU seconds."""
    loop = asyncio.get_running_loop()
    ctx = mp.get_context("spawn")
    procs: list[Any] = []
    conns: list[Connection] = []
    for job in jobs:
        parent_end, child_end = ctx.Pipe(duplex=True)
        proc = ctx.Process(target=_worker_main, args=(job, child_end), daemon=True,
                           name=f"servemark-worker-{job.index}")
        proc.start()
        child_end.close()
        procs.append(proc)
        conns.append(parent_end)
    cpu_total = 0.0
    done = asyncio.Event()
    remaining = len(conns)
    lock = threading.Lock()

    def deliver(data: bytes) -> None:
        for line in data[1:].split(b"\n"):
            rec = RequestRecord.from_dict(orjson.loads(line))
            live.done += 1
            live.sent += 1
            if not rec.ok and rec.error_kind != "cancelled":
                live.failed += 1
            live.output_tokens += rec.output_tokens or 0
            on_record(rec)

    def reader(conn: Connection) -> None:
        nonlocal cpu_total, remaining
        try:
            while True:
                data = conn.recv_bytes()
                if data[:1] == b"R":
                    loop.call_soon_threadsafe(deliver, data)
                    continue
                kind, value = _unpickle(data)
                if kind == "done":
                    with lock:
                        cpu_total += float(value)
                    break
        except (EOFError, OSError):
            pass
        finally:
            with lock:
                remaining -= 1
                if remaining == 0:
                    loop.call_soon_threadsafe(done.set)

    try:
        for conn in conns:  # wait until every worker has imported everything
            kind, _ = await loop.run_in_executor(None, conn.recv)
        start_at = time.perf_counter() + START_MARGIN_S
        for conn in conns:
            conn.send(("go", start_at))
        threads = [threading.Thread(target=reader, args=(c,), daemon=True) for c in conns]
        for t in threads:
            t.start()
        stop_sent = cancel_sent = False
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 0.1)
            if control.stop_requested and not stop_sent:
                stop_sent = True
                _broadcast(conns, "stop")
            if control.cancel_requested and not cancel_sent:
                cancel_sent = True
                _broadcast(conns, "cancel")
        for t in threads:
            t.join(timeout=5)
    finally:
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        for conn in conns:
            conn.close()
    return cpu_total


def _unpickle(data: bytes) -> tuple[str, Any]:
    import pickle

    value = pickle.loads(data)  # noqa: S301 - from our own child process
    return value[0], value[1]


def _broadcast(conns: list[Connection], message: str) -> None:
    for conn in conns:
        with contextlib.suppress(OSError, BrokenPipeError):
            conn.send(message)
