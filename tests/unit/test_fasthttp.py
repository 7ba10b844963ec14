"""The fast HTTP/1.1 transport against scripted raw servers: framing, reuse, failures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from servemark.client.fasthttp import FastTransport, HttpProtocolError, fast_reads_enabled
from servemark.client.pump import pump_enabled
from servemark.client.sse import SSEParser
from servemark.client.transport import HttpRequest, Timeouts

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def serve(handler: Handler) -> tuple[asyncio.AbstractServer, str, list[int]]:
    conns: list[int] = []

    async def wrapped(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        conns.append(1)
        try:
            await handler(r, w)
        finally:
            w.close()

    server = await asyncio.start_server(wrapped, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/v1/x", conns


async def read_request(r: asyncio.StreamReader) -> bytes:
    head = await r.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return await r.readexactly(length) if length else b""


async def each_request(r: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """The bodies of the requests on one keep-alive connection, until the client closes it."""
    while True:
        try:
            yield await read_request(r)
        except asyncio.IncompleteReadError:
            return


def chunked(*payloads: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in payloads) + b"0\r\n\r\n"


async def fetch(t: FastTransport, url: str, body: bytes = b"{}") -> tuple[int, list[bytes]]:
    async with t.open(HttpRequest("POST", url, body, {"Content-Type": "application/json"})) as resp:
        return resp.status, [c async for c in resp.iter_chunks()]


@pytest.mark.parametrize("step", [1, 2, 3, 7, 1000])
async def test_chunked_body_split_anywhere(step: int) -> None:
    body = chunked(b"data: a\n\n", b"data: bb\n\n", b"x" * 300)
    wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        for i in range(0, len(wire), step):
            w.write(wire[i:i + step])
            await w.drain()
            await asyncio.sleep(0)

    server, url, _ = await serve(handler)
    t = FastTransport()
    status, chunks = await fetch(t, url)
    assert status == 200
    assert b"".join(chunks) == b"data: a\n\ndata: bb\n\n" + b"x" * 300
    await t.close()
    server.close()


async def test_keep_alive_reuses_one_connection_and_content_length() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        async for body in each_request(r):
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await w.drain()

    server, url, conns = await serve(handler)
    t = FastTransport()
    for i in range(5):
        status, chunks = await fetch(t, url, b'{"i": %d}' % i)
        assert status == 200 and b"".join(chunks) == b'{"i": %d}' % i
    assert len(conns) == 1
    await t.close()
    server.close()


async def test_body_until_close_and_connection_close_header() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.0 200 OK\r\n\r\nhello ")
        await w.drain()
        w.write(b"world")
        await w.drain()

    server, url, conns = await serve(handler)
    t = FastTransport()
    assert b"".join((await fetch(t, url))[1]) == b"hello world"
    assert b"".join((await fetch(t, url))[1]) == b"hello world"
    assert len(conns) == 2  # not reused after a close-delimited body
    await t.close()
    server.close()


async def test_idle_connection_closed_by_server_is_retried_once() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await w.drain()
        # then close (keep-alive timeout on the server side)

    server, url, conns = await serve(handler)
    t = FastTransport()
    assert (await fetch(t, url))[0] == 200
    await asyncio.sleep(0.05)
    assert (await fetch(t, url))[0] == 200
    assert len(conns) == 2
    await t.close()
    server.close()


async def test_drop_mid_body_raises_connection_error() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await w.drain()
        w.transport.abort()

    server, url, _ = await serve(handler)
    t = FastTransport()
    with pytest.raises(ConnectionError):
        await fetch(t, url)
    await t.close()
    server.close()


async def test_read_timeout_and_garbage() -> None:
    async def silent(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        await asyncio.sleep(5)

    server, url, _ = await serve(silent)
    t = FastTransport(timeouts=Timeouts(read=0.2))
    with pytest.raises(TimeoutError):
        await fetch(t, url)
    server.close()

    async def garbage(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await w.drain()

    server, url, _ = await serve(garbage)
    with pytest.raises(HttpProtocolError):
        await fetch(FastTransport(), url)
    server.close()


# --- push mode: the body handed over from the read callback, no coroutine wake-up per read ---

async def fetch_push(t: FastTransport, url: str,
                     late_s: float = 0.0) -> tuple[list[bytes], list[float | None]]:
    """Push-read one response; ``late_s``: how long the coroutine waits after the head before
    it starts reading the body (the loop goes on reading the socket meanwhile)."""
    got: list[bytes] = []
    arrivals: list[float | None] = []

    def consumer(payload: bytes, arrival: float | None) -> None:
        got.append(payload)
        arrivals.append(arrival)

    async with t.open(HttpRequest("POST", url, b"{}")) as resp:
        assert resp.can_push  # type: ignore[attr-defined]
        if late_s:
            await asyncio.sleep(late_s)
        await resp.push(consumer)  # type: ignore[attr-defined]
        assert not resp.can_push  # type: ignore[attr-defined]
    return got, arrivals


@pytest.fixture(params=[("1", "1", "1"), ("1", "1", "0"), ("1", "0", "0"), ("0", "1", "1")],
                ids=["pump-thread", "kernel-stamps", "kernel-stamps-python-reads", "loop-reads"])
def stamps(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Plain-socket bodies read by the pump thread, by the C reader on the loop, by the same
    read in Python, or asyncio's transport (TLS's path)."""
    kernel, fast, pump = request.param
    monkeypatch.setenv("SERVEMARK_KERNEL_TIMESTAMPS", kernel)
    monkeypatch.setenv("SERVEMARK_FAST_READS", fast)
    monkeypatch.setenv("SERVEMARK_PUMP", pump)
    return kernel == "1"


@pytest.mark.parametrize("step", [1, 3, 1000])
async def test_push_delivers_the_same_body_as_iteration(step: int, stamps: bool) -> None:
    payloads = [b"data: a\n\n", b"data: bb\n\n", b"x" * 300, b"data: %d\n\n" % 7]
    wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(*payloads)

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        async for _ in each_request(r):
            for i in range(0, len(wire), step):
                w.write(wire[i:i + step])
                await w.drain()
                await asyncio.sleep(0)

    server, url, conns = await serve(handler)
    t = FastTransport()
    got, arrivals = await fetch_push(t, url)
    assert b"".join(got) == b"".join(payloads)
    # without kernel stamps, only bytes read before the body was pushed carry a time (when the
    # loop read them); the rest are timed by the consumer
    assert stamps or all(a is None or a <= time.perf_counter() for a in arrivals)
    # the kernel turns receive timestamps on a moment after the first socket asks (deferred
    # work), so only a later response is sure to carry them
    await asyncio.sleep(0.2)
    got2, arrivals = await fetch_push(t, url)  # the connection went back to the pool
    assert b"".join(got2) == b"".join(payloads) and len(conns) == 1
    assert not stamps or all(a is not None for a in arrivals), arrivals
    await t.close()
    server.close()


async def test_push_errors_reach_the_caller(stamps: bool) -> None:
    async def drop(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await w.drain()
        w.transport.abort()

    server, url, _ = await serve(drop)
    with pytest.raises(ConnectionError):
        await fetch_push(FastTransport(), url)
    server.close()

    async def bad_size(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n")
        await w.drain()
        await asyncio.sleep(1)

    server, url, _ = await serve(bad_size)
    with pytest.raises(HttpProtocolError):
        await fetch_push(FastTransport(), url)
    server.close()

    async def fine(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(b"data: 1\n\n"))
        await w.drain()

    def boom(payload: bytes, arrival: float | None) -> None:
        raise ValueError("consumer failed")

    server, url, _ = await serve(fine)
    t = FastTransport()
    with pytest.raises(ValueError, match="consumer failed"):
        async with t.open(HttpRequest("POST", url, b"{}")) as resp:
            await resp.push(boom)  # type: ignore[attr-defined]
    await t.close()
    server.close()


async def test_push_read_timeout_counts_silence_not_the_whole_body(stamps: bool) -> None:
    async def trickle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(6):  # 0.6 s in all, never 0.25 s without a byte
            w.write(b"9\r\ndata: x\n\n\r\n")
            await w.drain()
            await asyncio.sleep(0.1)
        w.write(b"0\r\n\r\n")
        await w.drain()

    server, url, _ = await serve(trickle)
    got, _ = await fetch_push(FastTransport(timeouts=Timeouts(read=0.25)), url)
    assert b"".join(got) == b"data: x\n\n" * 6
    server.close()

    async def stall(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\ndata: x\n\n\r\n")
        await w.drain()
        await asyncio.sleep(5)

    server, url, _ = await serve(stall)
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(TimeoutError, match="read timeout"):
        await fetch_push(FastTransport(timeouts=Timeouts(read=0.25)), url)
    assert 0.2 < loop.time() - began < 2.0
    began = loop.time()
    with pytest.raises(TimeoutError, match="total timeout"):
        await fetch_push(FastTransport(timeouts=Timeouts(read=None, total=0.3)), url)
    assert 0.25 < loop.time() - began < 2.0
    server.close()


async def test_reads_buffered_before_push_keep_their_own_arrival(stamps: bool) -> None:
    """The head comes with the first chunk; the coroutine starts reading the body only after
    the second chunk arrived too (a busy client's task wakes late). Each chunk still carries
    the arrival of the read that brought it (the kernel's stamp, or when the loop read it),
    not the latest one's."""
    gap = 0.03
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        async for _ in each_request(r):
            w.write(head + b"7\r\ndata: 1\r\n")
            await w.drain()
            await asyncio.sleep(gap)
            w.write(b"7\r\ndata: 2\r\n")
            await w.drain()
            await asyncio.sleep(gap)
            w.write(b"7\r\ndata: 3\r\n0\r\n\r\n")
            await w.drain()

    server, url, _ = await serve(handler)
    t = FastTransport()
    await fetch_push(t, url)  # stamps are on from the second response (see above)
    await asyncio.sleep(0.2)
    got, arrivals = await fetch_push(t, url, late_s=1.5 * gap)
    await t.close()
    server.close()
    assert got == [b"data: 1", b"data: 2", b"data: 3"]
    a1, a2, a3 = arrivals
    assert a1 is not None and a2 is not None
    assert a2 - a1 >= 0.8 * gap, arrivals
    if stamps:
        assert a3 is not None and a3 - a2 >= 0.8 * gap, arrivals
    else:  # read while the body was pushed: the consumer's own clock is the read time
        assert a3 is None


async def test_reads_of_several_events_reach_the_event_path_one_by_one(stamps: bool) -> None:
    """A client that fell behind reads several chunks at once. With the C reader armed, every
    whole one-event chunk of such a read goes to ``event`` (one call each, the read's arrival);
    what follows ([DONE], the last chunk) goes to the consumer. Every reader hands over the same
    events, and the events of one read share its arrival."""
    gap, groups = 0.03, 5
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"

    def group(g: int) -> bytes:
        return b"".join(b"%x\r\n%s\r\n" % (len(p), p)
                        for p in (b"data: {\"g\":%d,\"i\":%d}\n\n" % (g, i) for i in range(3)))

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        async for _ in each_request(r):
            w.write(head)
            await w.drain()
            for g in range(groups):
                await asyncio.sleep(gap)
                tail = b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n" if g == groups - 1 else b""
                w.write(group(g) + tail)  # one write: one read for a client that keeps up
                await w.drain()

    got: list[tuple[bytes, float | None]] = []
    by_event = [0]

    def consumer(data: bytes, arrival: float | None) -> None:
        got.extend((p, arrival) for p in SSEParser().feed(data))

    def event(payload: bytes, arrival: float | None) -> None:
        by_event[0] += 1
        got.append((payload, arrival))

    server, url, _ = await serve(handler)
    t = FastTransport()
    for _ in range(2):  # stamps are on from the second response (see above)
        got.clear()
        by_event[0] = 0
        async with t.open(HttpRequest("POST", url, b"{}")) as resp:
            await resp.push(consumer, event)  # type: ignore[attr-defined]
        await asyncio.sleep(0.2)
    await t.close()
    server.close()
    expected = [b"{\"g\":%d,\"i\":%d}" % (g, i) for g in range(groups) for i in range(3)]
    assert [p for p, _ in got] == expected + [b"[DONE]"]
    c_reader = stamps and fast_reads_enabled() and not pump_enabled()
    assert (by_event[0] >= 3 * (groups - 1)) if c_reader else by_event[0] == 0, by_event
    arrivals = [a for _, a in got[:-1]]
    if stamps:
        for g in range(groups):
            a = arrivals[3 * g: 3 * g + 3]
            assert a[0] is not None and a[0] == a[1] == a[2], arrivals
        firsts = [x for x in arrivals[::3] if x is not None]
        assert all(b - a >= 0.8 * gap for a, b in zip(firsts, firsts[1:], strict=False)), firsts
