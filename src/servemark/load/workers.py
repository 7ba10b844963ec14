"""Spread one load point over N client processes, each with its own event loop and connections.

Global exactness comes from the parent: it splits closed-loop concurrency and the request budget
across workers (the shares sum to the totals), and for open loop it draws ONE arrival schedule and
deals the arrivals round-robin, so the union of the workers' sends is exactly the schedule. All
workers start at the same absolute monotonic time (CLOCK_MONOTONIC is system-wide on Linux).
Workers stream finished records back in small batches of JSON lines, which the parent writes
to requests.jsonl as they arrive without parsing them; each worker folds its records into its
own accumulator (metrics/accumulate.py) and sends it once at the end, and the parent merges
them, so the parent's cost per record is one write and nobody keeps the records.
Stop: the parent forwards its first and second interrupt to every worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing as mp
import random
import struct
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
from servemark.load import eventloop
from servemark.load.balance import make_picker
from servemark.load.looplag import LoopLag
from servemark.load.runner import LiveCounters, RunControl, run_point
from servemark.load.schedule import LoadPoint, arrival_offsets
from servemark.metrics.accumulate import PointAccumulator
from servemark.metrics.record import RequestRecord
from servemark.workload.base import WorkItem, cycle_pool, requests_of

BATCH_SECONDS = 0.02
START_MARGIN_S = 0.05
_COUNTS = struct.Struct("<QQQ")  # a batch's records, failures, output tokens

# on_lines(json_lines, last_record): newline-terminated records to append, and the batch's last
OnLines = Callable[[bytes, RequestRecord], None]


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
    threshold_tps: float | None = None
    by_endpoint: bool = False
    clock_offset_s: float = 0.0  # this worker's monotonic clock minus the parent's (other hosts)


@dataclass
class WorkersOutcome:
    cpu_s: float  # the workers' CPU seconds, all together
    accumulator: PointAccumulator  # every worker's, merged
    complete: bool  # False when a worker ended without sending its accumulator
    # the latest event loop of all workers: the largest of their p99 timer lateness (a stream
    # is read by one worker only, so one late worker is enough for its reads to merge)
    loop_lag_p99_s: float | None = None


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
        reuse = horizon > len(specs)  # a pool smaller than the run: each worker cycles its part
        for i in range(workers):
            mine = offsets[i::workers]
            if not mine:
                continue
            sub = LoadPoint(request_rate=point.request_rate, arrival=point.arrival,
                            max_concurrency=caps[i] or None)
            dealt = specs[i::workers] if reuse else specs[i::workers][: len(mine)]
            jobs.append(WorkerJob(i, sub, dealt, mine, len(mine), duration_s, **common,
                                  cycle=reuse, id_stride=workers))
        return jobs
    shares = split(point.concurrency or 1, min(workers, point.concurrency or 1))
    budgets = split(num_requests, len(shares)) if num_requests is not None else [None] * len(shares)
    for i, share in enumerate(shares):
        dealt = specs[i::len(shares)]
        jobs.append(WorkerJob(i, LoadPoint(concurrency=share), dealt, None, budgets[i], duration_s,
                              **common, cycle=num_requests is None or num_requests > len(specs),
                              id_stride=len(shares)))
    return jobs


def _worker_main(job: WorkerJob, conn: Connection, tag: str | None = None) -> None:
    """Child process (or Ray actor): run its share, stream records back, obey stop messages.
    ``tag`` names this worker in its records (``RequestRecord.worker``)."""
    import signal

    # Ctrl-C reaches the whole process group; only the parent decides what it means.
    with contextlib.suppress(ValueError):  # not the main thread (a Ray actor): no signals here
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
        counts = [0, 0, 0]
        last_flush = time.perf_counter()
        acc = PointAccumulator(job.threshold_tps, by_endpoint=job.by_endpoint)
        worker_tag = tag or f"w{job.index}"

        def flush() -> None:
            nonlocal last_flush
            if pending:
                pending.append(b"")  # every line newline-terminated
                conn.send_bytes(b"R" + _COUNTS.pack(*counts) + b"\n".join(pending))
                pending.clear()
                counts[:] = [0, 0, 0]
            last_flush = time.perf_counter()

        def on_record(rec: RequestRecord) -> None:
            rec.worker = worker_tag
            acc.add(rec)
            pending.append(orjson.dumps(rec, option=orjson.OPT_SERIALIZE_NUMPY))
            counts[0] += 1
            if not rec.ok and rec.error_kind != "cancelled":
                counts[1] += 1
            counts[2] += rec.output_tokens or 0
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
        start_at += job.clock_offset_s  # the parent's clock reading, on this machine's clock
        t0 = job.t0 + job.clock_offset_s
        loop.add_reader(conn.fileno(), on_message)
        flusher = asyncio.create_task(periodic_flush())

        by_url = {t.base_url: t for t in job.targets}
        picker = make_picker(job.lb_policy, list(by_url))

        async def send(spec: RequestSpec, scheduled: float | None) -> RequestRecord:
            url = picker.acquire()
            try:
                return await execute(transport, by_url[url], spec, job.opts, t0=t0,
                                     load_point=job.label,
                                     scheduled_s=None if scheduled is None else scheduled - t0)
            finally:
                picker.release(url)

        cpu0 = time.process_time()
        lag = LoopLag().start()
        try:
            source = (cycle_pool(job.specs, requests_of(job.specs[0])[0].request_id, job.id_stride)
                      if job.cycle and job.specs else iter(job.specs))
            await run_point(job.point, source, send, on_record,
                            num_requests=job.num_requests, duration_s=job.duration_s,
                            control=control, start_at=start_at,
                            offsets=iter(job.offsets) if job.offsets is not None else None)
        finally:
            lag.stop()
            flusher.cancel()
            flush()
            loop.remove_reader(conn.fileno())
            await transport.close()
        acc.fold()
        conn.send(("done", (time.process_time() - cpu0, acc, lag.p99_s)))

    with contextlib.suppress(KeyboardInterrupt):  # the parent decides when to stop
        eventloop.run(run())


async def run_point_workers(
    jobs: list[WorkerJob],
    on_lines: OnLines,
    control: RunControl,
    live: LiveCounters,
    accumulator: PointAccumulator,
) -> WorkersOutcome:
    """Run the jobs in child processes; their accumulators are merged into ``accumulator``."""
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
    try:
        return await drive_workers(conns, on_lines, control, live, accumulator)
    finally:
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        for conn in conns:
            conn.close()


def _last_record(lines: bytes) -> RequestRecord:
    cut = lines.rfind(b"\n", 0, len(lines) - 1)
    return RequestRecord.from_dict(orjson.loads(lines[cut + 1:]))


async def drive_workers(
    conns: list[Connection],
    on_lines: OnLines,
    control: RunControl,
    live: LiveCounters,
    accumulator: PointAccumulator,
) -> WorkersOutcome:
    """The parent's side of the protocol over one connection per worker (pipes to child
    processes or sockets to Ray actors): start them together, take their records, forward stops."""
    loop = asyncio.get_running_loop()
    cpu_total = 0.0
    lags: list[float] = []
    done = asyncio.Event()
    remaining = len(conns)
    finished = 0
    lock = threading.Lock()

    def deliver(data: bytes) -> None:
        n, failed, tokens = _COUNTS.unpack_from(data, 1)
        lines = data[1 + _COUNTS.size:]
        live.done += n
        live.sent += n
        live.failed += failed
        live.output_tokens += tokens
        on_lines(lines, _last_record(lines))

    def merge(acc: PointAccumulator) -> None:
        accumulator.merge(acc)

    def reader(conn: Connection) -> None:
        nonlocal cpu_total, remaining, finished
        try:
            while True:
                data = conn.recv_bytes()
                if data[:1] == b"R":
                    loop.call_soon_threadsafe(deliver, data)
                    continue
                kind, value = _unpickle(data)
                if kind == "done":
                    cpu, acc, lag = value
                    with lock:
                        cpu_total += float(cpu)
                        finished += 1
                        if lag is not None:
                            lags.append(float(lag))
                    loop.call_soon_threadsafe(merge, acc)
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
        await asyncio.sleep(0)  # run the deliveries and merges the readers scheduled last
    except BaseException:
        _broadcast(conns, "cancel")
        raise
    return WorkersOutcome(cpu_total, accumulator, finished == len(conns),
                          max(lags) if lags else None)


def _unpickle(data: bytes) -> tuple[str, Any]:
    import pickle

    value = pickle.loads(data)  # noqa: S301 - from our own child process
    return value[0], value[1]


def _broadcast(conns: list[Connection], message: str) -> None:
    for conn in conns:
        with contextlib.suppress(OSError, BrokenPipeError):
            conn.send(message)
