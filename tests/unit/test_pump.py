"""The body-reader thread (``_pump.c``): de-chunking any split of any body, its reports (end,
eager reads, errors), and why it exists: a blocked event loop does not merge reads' arrivals."""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servemark.client.fasthttp import FastTransport
from servemark.client.pump import PROTO_ERR, _pump
from servemark.client.transport import HttpRequest

pytestmark = pytest.mark.skipif(_pump is None, reason="the C pump is built by every Linux install")


def wire_of(payloads: list[bytes], ext: bool, trailers: list[bytes]) -> bytes:
    size = (lambda p: b"%X;x=1" % len(p)) if ext else (lambda p: b"%x" % len(p))
    body = b"".join(size(p) + b"\r\n" + p + b"\r\n" for p in payloads if p)
    return body + b"0\r\n" + b"".join(t + b"\r\n" for t in trailers) + b"\r\n"


def wait_ready(pump: object, slot: int, timeout: float = 5.0) -> tuple:
    """Block until the thread reports ``slot``; then take what it has."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        select.select([pump.fileno()], [], [], 0.05)  # type: ignore[attr-defined]
        if slot in pump.ready():  # type: ignore[attr-defined]
            return pump.take(slot)  # type: ignore[attr-defined,no-any-return]
    raise AssertionError("the pump reported nothing")


def finish(pump: object, slot: int) -> tuple[bytes, tuple]:
    got = b""
    while True:
        reads, finished, err, eof, extra, last, arrival = taken = wait_ready(pump, slot)
        got += b"".join(b"data: %s\n\n" % d if one else d for d, _, one in reads)
        if finished:
            return got, taken


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads=st.lists(st.binary(max_size=300) | st.sampled_from([b"data: x\n\n", b"\r\n"]),
                         max_size=8),
       ext=st.booleans(), trailers=st.lists(st.sampled_from([b"X-A: 1", b"Y: z"]), max_size=2),
       cuts=st.lists(st.integers(1, 40), max_size=12), eager=st.booleans(),
       pending=st.integers(0, 5), after=st.sampled_from([b"", b"HTTP/1.1 200"]))
def test_any_split_of_any_chunked_body_comes_out_whole(payloads, ext, trailers, cuts, eager,
                                                        pending, after) -> None:
    wire = wire_of(payloads, ext, trailers)
    pending = min(pending, len(wire) - 1)
    a, b = socket.socketpair()
    pump = _pump.Pump()
    try:
        a.setblocking(False)
        slot = pump.add(a.fileno(), wire[:pending], time.perf_counter(), eager)
        rest, pos = wire[pending:] + after, 0
        for cut in cuts:  # pieces, each its own send (maybe its own read)
            b.sendall(rest[pos:pos + cut])
            pos += cut
        b.sendall(rest[pos:])
        got, (_, finished, err, eof, extra, _, arrival) = finish(pump, slot)
        assert (finished, err, eof) == (1, 0, 0)
        assert got == b"".join(payloads)
        left = b""
        while True:  # what follows the body: handed back, or still in the socket, never lost
            try:
                left += a.recv(4096)
            except BlockingIOError:
                break
        assert extra + left == after
        assert arrival is not None
    finally:
        pump.close()
        a.close()
        b.close()


@pytest.mark.parametrize("wire", [b"zz\r\n", b"5\r\nhello!!\r\n", b"\r\n", b"3\r\nabcX\n"])
def test_bad_framing_ends_the_body_with_an_error(wire: bytes) -> None:
    a, b = socket.socketpair()
    pump = _pump.Pump()
    try:
        slot = pump.add(a.fileno(), b"", time.perf_counter(), False)
        b.sendall(wire + b"\r\n\r\n")
        _, (_, finished, err, eof, _, _, _) = finish(pump, slot)
        assert (finished, err, eof) == (1, PROTO_ERR, 0)
    finally:
        pump.close()
        a.close()
        b.close()


def test_eager_reports_every_read_and_events_come_out_whole_and_the_close_mid_body() -> None:
    a, b = socket.socketpair()
    pump = _pump.Pump()
    try:
        slot = pump.add(a.fileno(), b"", time.perf_counter(), True)
        b.sendall(b"3\r\nabc\r\n")
        reads, finished, *_ = wait_ready(pump, slot)
        assert [(d, one) for d, _, one in reads] == [(b"abc", False)] and not finished
        b.sendall(b"b\r\ndata: {1}\n\n\r\n")  # one whole single-line event: its data alone
        time.sleep(0.05)
        [(got_slot, reads, finished, *_)] = pump.drain()
        assert got_slot == slot and [(d, one) for d, _, one in reads] == [(b"{1}", True)]
        b.sendall(b"2\r\nde\r\n")
        b.close()  # the server goes away mid-body
        got, (_, finished, err, eof, *_) = finish(pump, slot)
        assert got == b"de" and (finished, err, eof) == (1, 0, 1)
        pump.remove(slot)
        with pytest.raises(KeyError):
            pump.take(slot)
    finally:
        pump.close()
        a.close()


def test_a_removed_socket_is_not_read_any_more() -> None:
    a, b = socket.socketpair()
    pump = _pump.Pump()
    try:
        slot = pump.add(a.fileno(), b"", time.perf_counter(), True)
        pump.remove(slot)
        b.sendall(b"3\r\nabc\r\n")
        time.sleep(0.1)
        assert pump.ready() == []
        a.setblocking(False)
        assert a.recv(100) == b"3\r\nabc\r\n"  # still there for the event loop
    finally:
        pump.close()
        a.close()
        b.close()


def paced_server(gap: float, n: int) -> tuple[socket.socket, threading.Thread]:
    """A keep-alive server on its own thread (the client's blocked loop must not block it):
    every request gets ``n`` one-event chunks ``gap`` seconds apart."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with contextlib.suppress(OSError):  # the client may go away mid-body
            serve_one()

    def serve_one() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pending = b""
            while True:
                while b"\r\n\r\n" not in pending:
                    more = conn.recv(4096)
                    if not more:
                        return
                    pending += more
                pending = pending.split(b"\r\n\r\n", 1)[1][2:]  # the 2-byte body
                conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                time.sleep(0.01)
                for i in range(n):
                    conn.sendall(b"9\r\ndata: %d\n\n\r\n" % i)
                    time.sleep(gap)
                conn.sendall(b"0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


@pytest.mark.parametrize("pump", ["1", "0"])
async def test_a_blocked_event_loop_does_not_merge_the_arrivals_of_reads(pump, monkeypatch):
    """Chunks 40 ms apart while the client's event loop is blocked for 200 ms: read on the loop
    they come back in one read sharing its stamp; the pump thread read each as it came."""
    gap, n = 0.04, 4
    monkeypatch.setenv("SERVEMARK_PUMP", pump)
    listener, thread = paced_server(gap, n)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1/x"
    t = FastTransport()
    try:
        for _ in range(2):  # kernel stamps are on from the second response
            arrivals: list[float] = []

            def consumer(data: bytes, arrival: float, into: list[float] = arrivals) -> None:
                into.append(arrival)

            async with t.open(HttpRequest("POST", url, b"{}")) as resp:
                push = asyncio.ensure_future(resp.push(consumer))  # type: ignore[attr-defined]
                await asyncio.sleep(0)
                time.sleep(gap * n + 0.05)  # the loop is busy elsewhere while all arrive
                await push
    finally:
        await t.close()
        listener.close()
    thread.join(5)
    spread = max(arrivals) - min(arrivals)
    if pump == "1":
        assert spread >= 0.8 * gap * (n - 1), arrivals  # each chunk kept its own arrival
    else:
        assert spread < gap, arrivals  # on the loop: one late read for all of them


async def test_a_cancelled_body_keeps_what_the_thread_had_read(monkeypatch) -> None:
    """Ctrl-C (or a first-token timeout) cancels a body mid-stream: every read the thread made
    reaches the consumer (also one not yet handed over), so a partial record keeps its chunk
    times, and the cancellation ends cleanly."""
    monkeypatch.setenv("SERVEMARK_PUMP", "1")
    listener, thread = paced_server(0.03, 8)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1/x"
    t = FastTransport()
    got: list[bytes] = []
    try:
        async with t.open(HttpRequest("POST", url, b"{}")) as resp:
            push = asyncio.ensure_future(resp.push(lambda d, a: got.append(d)))  # type: ignore[attr-defined]
            await asyncio.sleep(0.12)
            push.cancel()
            with pytest.raises(asyncio.CancelledError):
                await push
    finally:
        await t.close()
        listener.close()
    thread.join(5)
    assert 2 <= len(got) <= 6 and got[0] == b"data: 0\n\n", got
