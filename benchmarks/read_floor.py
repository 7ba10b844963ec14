"""Read floor: what one paced chunk costs a client that does nothing but read it, beside servemark.

Why: with chunks 10 ms apart every chunk is its own network read, so a client pays at least the
event loop's wake-up and one ``recvmsg`` per chunk before any parsing. This runs a bare reader —
the same event loop, plain sockets with kernel receive timestamps, one ``recvmsg`` per readable
socket, a new request when a response ends, nothing else — and servemark's client at the same
load against the paced stub (its own process, pinned to the last core), and prints CPU
microseconds per chunk for both. Where the bare reader alone needs most of the client core, no
parser can keep that load on one core and the point needs ``--workers`` on more cores.
Prints figures; it is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from servemark.api import bench  # noqa: E402
from servemark.client.fasthttp import SO_TIMESTAMPNS  # noqa: E402
from servemark.load.eventloop import loop_factory, loop_name  # noqa: E402
from servemark.spec import BenchConfig  # noqa: E402
from servemark.stub.process import StubProcess, pin_beside_stub  # noqa: E402
from servemark.stub.wire import MODEL  # noqa: E402

_END = b"\r\n0\r\n\r\n"


def bare_reader(port: int, streams: int, chunks: int, rounds: int) -> tuple[float, float, int]:
    """(chunks per second, client CPU share, reads) of the do-nothing reader."""
    body = (b'{"model":"%s","prompt":"hello","max_tokens":%d,"stream":true}'
            % (MODEL.encode(), chunks))
    request = (b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
               b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    factory = loop_factory()
    loop = factory() if factory is not None else asyncio.new_event_loop()
    finished = loop.create_future()
    left = [streams * rounds, streams * (rounds - 1)]  # responses to read, requests to send
    reads = [0]
    socks = []

    def reader(sock: socket.socket) -> None:
        data = sock.recvmsg(1 << 16, 64)[0]
        reads[0] += 1
        if data.endswith(_END):
            left[0] -= 1
            if left[1] > 0:
                left[1] -= 1
                sock.send(request)
            if left[0] == 0 and not finished.done():
                finished.set_result(None)

    for _ in range(streams):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        loop.add_reader(sock.fileno(), reader, sock)
        socks.append(sock)
    cpu0, t0 = time.process_time(), time.perf_counter()
    for sock in socks:
        sock.send(request)
    loop.run_until_complete(finished)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    for sock in socks:
        loop.remove_reader(sock.fileno())
        sock.close()
    loop.close()
    return streams * rounds * chunks / wall, cpu / wall, reads[0]


def servemark_client(url: str, streams: int, chunks: int, rounds: int) -> tuple[float, float]:
    """(chunks per second, client CPU share) of servemark's client, every chunk timestamped."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = BenchConfig(base_url=url, concurrency=[streams], num_requests=streams * rounds,
                          input_len=16, output_len=chunks, output_dir=Path(tmp) / "run",
                          results_root=Path(tmp))
        p = bench(cfg).points[0]
    return p.output_tokens_per_s or 0.0, (p.fidelity.client_cpu_util or 0.0) if p.fidelity else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", default="256,1024")
    parser.add_argument("--chunks", type=int, default=256, help="chunks per response")
    parser.add_argument("--rounds", type=int, default=2, help="responses per stream")
    parser.add_argument("--itl", type=float, default=0.010, help="seconds between chunks")
    args = parser.parse_args()
    stub_cpu = pin_beside_stub()
    print(f"event loop: {loop_name()}; {args.chunks} chunks {args.itl * 1000:g} ms apart, "
          f"{args.rounds} responses per stream; CPU per chunk of the client core")
    print(f"{'streams':>7} {'client':>10} {'chunks/s':>9} {'CPU':>5} {'µs/chunk':>8} "
          f"{'reads/chunk':>11}")
    for n in (int(x) for x in args.streams.split(",")):
        with StubProcess("--ttft", "0.05", "--itl", str(args.itl), cpu=stub_cpu,
                         engine="fast") as stub:
            rate, util, reads = bare_reader(stub.port, n, args.chunks, args.rounds)
            total = n * args.rounds * args.chunks
            print(f"{n:>7} {'bare read':>10} {rate:>9,.0f} {util:>5.0%} "
                  f"{util / rate * 1e6:>8.2f} {reads / total:>11.2f}")
        with StubProcess("--ttft", "0.05", "--itl", str(args.itl), cpu=stub_cpu,
                         engine="fast") as stub:
            rate, util = servemark_client(stub.base_url, n, args.chunks, args.rounds)
            print(f"{n:>7} {'servemark':>10} {rate:>9,.0f} {util:>5.0%} "
                  f"{util / rate * 1e6 if rate else 0:>8.2f} {'':>11}")


if __name__ == "__main__":
    main()
