"""The paced stub's own fidelity: how late it writes its chunks at 256 and 1,024 streams.

A minimal closed-loop reader (raw sockets, one request per connection at a time, it only looks
for the end of each response) keeps N streams open against ``python -m servemark.stub --engine
fast`` (TTFT 50 ms, 10 ms between chunks) pinned to its own core, for ``--seconds``. Printed
from ``GET /stub/stats`` and /proc: chunks/s written, mean / max lateness of first and later
chunks (from each request's kernel arrival), the actual mean gap before later chunks, mean
parse delay (kernel arrival -> handled), and the stub's CPU share.
Targets (load-generator issue, timing fidelity): 1,024 × 100 chunks/s with mean lateness well
under 0.5 ms, under 0.1 ms at 256 streams. Prints figures; not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from servemark.stub.process import StubProcess, pin_beside_stub  # noqa: E402

_END = b"0\r\n\r\n"


def _stats(base_url: str) -> dict:
    with urllib.request.urlopen(base_url + "/stub/stats", timeout=10) as resp:  # noqa: S310
        return dict(json.loads(resp.read()))


class _Reader(asyncio.Protocol):
    """Sends a request whenever the previous response ended, until ``stop_at``."""

    def __init__(self, request: bytes, stop_at: float, done: asyncio.Future[None]) -> None:
        self.request, self.stop_at, self.done = request, stop_at, done
        self.tail = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        tail = (self.tail + data)[-5:]
        self.tail = tail
        if tail == _END:
            self.tail = b""
            assert self.transport is not None
            if time.perf_counter() < self.stop_at:
                self.transport.write(self.request)
            else:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def _drive(port: int, streams: int, chunks: int, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    body = json.dumps({"model": "stub", "prompt": "x" * 128, "max_tokens": chunks,
                       "stream": True}).encode()
    request = (b"POST /v1/completions HTTP/1.1\r\nHost: stub\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    stop_at = time.perf_counter() + seconds
    dones = []
    for _ in range(streams):
        done: asyncio.Future[None] = loop.create_future()
        await loop.create_connection(functools.partial(_Reader, request, stop_at, done),
                                     "127.0.0.1", port)
        dones.append(done)
    await asyncio.gather(*dones)


def measure(streams: int, ttft: float, itl: float, chunks: int, seconds: float,
            stub_cpu: int | None) -> dict:
    with StubProcess("--ttft", str(ttft), "--itl", str(itl), engine="fast", cpu=stub_cpu) as stub:
        cpu0, t0 = stub.cpu_s(), time.perf_counter()
        try:
            import uvloop

            uvloop.run(_drive(stub.port, streams, chunks, seconds))
        except ImportError:
            asyncio.run(_drive(stub.port, streams, chunks, seconds))
        wall = time.perf_counter() - t0
        st = _stats(stub.base_url)
        st["stub_cpu"] = (stub.cpu_s() - cpu0) / wall
        st["chunks_per_s"] = (st["paced_first_chunks"] + st["paced_next_chunks"]) / wall
    return st


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--streams", default="256,1024")
    ap.add_argument("--ttft", type=float, default=0.050)
    ap.add_argument("--itl", type=float, default=0.010)
    ap.add_argument("--chunks", type=int, default=64, help="chunks per response")
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    stub_cpu = pin_beside_stub()
    print(f"fast stub engine on CPU {stub_cpu}: TTFT {args.ttft * 1e3:.0f} ms, ITL "
          f"{args.itl * 1e3:.0f} ms, {args.chunks} chunks per response, {args.seconds:.0f} s")
    print(f"{'streams':>7} {'chunks/s':>9} {'late 1st ms':>11} {'max':>7} {'late next ms':>12} "
          f"{'max':>7} {'gap ms':>7} {'parse ms':>8} {'stub CPU':>8} {'CPU µs/chunk':>12}")
    for n in (int(x) for x in args.streams.split(",")):
        st = measure(n, args.ttft, args.itl, args.chunks, args.seconds, stub_cpu)

        def ms(key: str, st: dict = st) -> str:
            v = st.get(key)
            return "–" if v is None else f"{v * 1e3:.3f}"

        print(f"{n:>7} {st['chunks_per_s']:>9,.0f} {ms('mean_first_chunk_late_s'):>11} "
              f"{ms('max_first_chunk_late_s'):>7} {ms('mean_next_chunk_late_s'):>12} "
              f"{ms('max_next_chunk_late_s'):>7} {ms('mean_next_chunk_gap_s'):>7} "
              f"{ms('mean_parse_delay_s'):>8} "
              f"{st['stub_cpu']:>8.0%} {st['stub_cpu'] / st['chunks_per_s'] * 1e6:>12.1f}")


if __name__ == "__main__":
    main()
