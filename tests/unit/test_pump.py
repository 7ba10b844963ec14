"""The reader thread (``_pump.c``): every byte of every read handed over in order with the
read's arrival, one-event chunks marked, the end of the stream, removal, and why it exists: a
blocked event loop does not merge the arrivals of reads."""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servemark.client.fasthttp import FastTransport
from servemark.client.pump import _pump
from servemark.client.transport import HttpRequest

pytestmark = pytest.mark.skipif(_pump is None, reason="the C pump is built by every Linux install")


def drain_until(pump: object, slot: int, done: object, timeout: float = 5.0) -> list:
    """Everything the thread hands over for ``slot`` until ``done(entries)`` says enough."""
    entries: list = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        select.select([pump.fileno()], [], [], 0.05)  # type: ignore[attr-defined]
        entries += [t for s, t in pump.drain() if s == slot]  # type: ignore[attr-defined]
        if done(entries):  # type: ignore[operator]
            return entries
    raise AssertionError(f"the pump did not hand over enough: {entries}")


def event_chunk(x: bytes) -> bytes:
    return b"%x\r\ndata: %s\n\n\r\n" % (len(x) + 8, x)


def as_sent(data: bytes, one: bool) -> bytes:
    return event_chunk(data) if one else data


@contextlib.contextmanager
def pump_and_pair() -> Iterator[tuple[_pump.Pump, socket.socket, socket.socket]]:
    """A reader thread and a connected socket pair (the thread reads the first), all closed
    after."""
    a, b = socket.socketpair()
    pump = _pump.Pump()
    try:
        yield pump, a, b
    finally:
        pump.close()
        a.close()
        b.close()


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pieces=st.lists(st.binary(min_size=1, max_size=200)
                       | st.sampled_from([b"{}", b'{"a":1}']).map(event_chunk), max_size=8),
       gap=st.sampled_from([0.0, 0.003]))
def test_every_byte_comes_out_in_order_and_one_event_reads_are_marked(pieces, gap) -> None:
    wire = b"".join(pieces)
    with pump_and_pair() as (pump, a, b):
        slot = pump.add(a.fileno())
        for piece in pieces:
            b.sendall(piece)
            if gap:
                time.sleep(gap)  # most pieces then come as reads of their own
        b.close()
        entries = drain_until(pump, slot, lambda es: any(t[1] for t in es))
        reads = [r for t in entries for r in t[0]]
        assert b"".join(as_sent(d, one) for d, _, one in reads) == wire
        for d, _, one in reads:  # marked: exactly one whole chunk holding one "data: X" event
            assert not one or (b"\n" not in d and b"\r" not in d and d != b"[DONE]")
        _, finished, err, eof, _ = entries[-1]
        assert (finished, err, eof) == (1, 0, 1)
        stamps = [at for _, at, _ in reads]
        assert stamps == sorted(stamps)


def test_a_read_of_one_event_chunk_hands_over_its_data_and_others_their_bytes() -> None:
    with pump_and_pair() as (pump, a, b):
        slot = pump.add(a.fileno())
        sent = [event_chunk(b'{"i":1}'), b"HTTP/1.1 200 OK\r\n\r\n", event_chunk(b"[DONE]"),
                event_chunk(b"a") + event_chunk(b"b"), event_chunk(b'{"i":2}')]
        for piece in sent:
            b.sendall(piece)
            time.sleep(0.02)  # its own read
        entries = drain_until(pump, slot, lambda es: sum(len(t[0]) for t in es) >= len(sent))
        reads = [(d, one) for t in entries for d, _, one in t[0]]
        assert reads == [(b'{"i":1}', True), (sent[1], False), (sent[2], False),
                         (sent[3], False), (b'{"i":2}', True)]
        assert not any(t[1] for t in entries)  # the socket is still open


def test_a_removed_socket_is_not_read_any_more() -> None:
    with pump_and_pair() as (pump, a, b):
        slot = pump.add(a.fileno())
        pump.remove(slot)
        b.sendall(b"3\r\nabc\r\n")
        time.sleep(0.1)
        assert pump.drain() == []
        with pytest.raises(KeyError):
            pump.take(slot)
        a.setblocking(False)
        assert a.recv(100) == b"3\r\nabc\r\n"  # still there for whoever reads it next


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
