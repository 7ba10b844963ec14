"""A small, fast HTTP/1.1 client transport on asyncio protocols (keep-alive pool, chunked bodies).

Why not aiohttp on the hot path: a load generator must not be the bottleneck. This transport does
the minimum per network read — append to a buffer, wake one waiter — and de-chunks every complete
HTTP chunk present in one pass, yielding them together, so per-event costs stay in the SSE layer.
It speaks only what OpenAI-compatible servers need: request with a body, status + headers,
Content-Length / chunked / until-close bodies, keep-alive. TLS works through ``ssl``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl as ssl_module
import struct
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from servemark.client.kernelstamp import to_perf
from servemark.client.pump import PumpHub, Taken, pump_enabled

try:  # the per-read hot path in C (setup.py builds it where a compiler is; else Python reads)
    from servemark.client import _fastread
except ImportError:  # pragma: no cover - built by every install on Linux with a compiler
    _fastread = None  # type: ignore[assignment]
from servemark.client.transport import HttpRequest, StreamResponse, Timeouts


class HttpProtocolError(ConnectionError):
    """The server's bytes are not valid HTTP/1.1."""


Sink = Callable[[bytes | None, float | None], None]  # (bytes just read or None at close, arrival)
EventSink = Callable[[bytes, float | None], None]  # (one SSE event's data, arrival)


class _Conn(asyncio.Protocol):
    """A connection on an asyncio transport (TLS, or where kernel timestamps are off)."""

    __slots__ = ("buf", "closed", "exc", "last", "loop", "reads", "sink", "transport", "waiter")
    arrival = None  # no kernel timestamps: the reader's clock is the arrival time

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.sink: Sink | None = None
        self.last = 0.0  # perf_counter of the latest read (read timeouts in push mode)
        self.reads: list[tuple[int, float | None]] = []  # as in _SockConn: when each was read
        self.closed = False
        self.exc: BaseException | None = None

    def take_reads(self) -> list[tuple[bytes, float | None]]:
        return _take_reads(self.buf, self.reads)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.last = time.perf_counter()
        if self.sink is not None:
            self.sink(data, None)
            return
        _note_read(self.buf, self.reads, len(data), self.last)
        self.buf += data
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def eof_received(self) -> bool:
        self._wake_closed(None)
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        self._wake_closed(exc)

    def _wake_closed(self, exc: BaseException | None) -> None:
        self.closed = True
        self.exc = self.exc or exc
        if self.sink is not None:
            self.sink(None, self.arrival)
            return
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def wait(self, timeout: float | None) -> None:
        await _wait(self, timeout)

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.closed = True


SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; Python does not export it
_READ = 1 << 16
_MAX_READS = 256  # per-read arrivals kept for buffered bytes (a bound, not a limit on bytes)
_unpack_ts = struct.Struct("qq").unpack_from


class _SockConn:
    """A plain-TCP connection read with ``recvmsg`` so every read carries the kernel's receive
    timestamp: ``arrival`` (a ``time.perf_counter`` reading) is when the latest bytes reached
    this machine, not when a busy event loop got round to them — a saturated client then still
    measures the server's TTFT, not its own queue. Same interface as :class:`_Conn`."""

    __slots__ = ("_error", "_event", "_hub", "_out", "_reader", "_slot", "arrival", "buf",
                 "closed", "exc", "fd", "last", "loop", "reads", "sink", "sock", "waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 hub: PumpHub | None = None) -> None:
        self.loop = loop
        self.sock = sock
        self.fd = sock.fileno()
        self.buf = bytearray()
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.exc: BaseException | None = None
        self.arrival: float | None = None
        # (size, arrival) of each read appended to ``buf`` while no sink takes them
        self.reads: list[tuple[int, float | None]] = []
        self.sink: Sink | None = None
        self.last = 0.0
        self._out = b""
        self._reader = None
        self._hub, self._slot = hub, -1
        self._event: EventSink | None = None  # armed, where the reader thread reads
        self._error: Callable[[BaseException], None] | None = None
        if hub is not None:  # a reader thread reads it (see servemark.client.pump)
            self._slot = hub.add(self.fd, self._pumped)
        elif _fastread is not None and fast_reads_enabled():
            # the same as _readable, in C; one-event reads go to the armed event callback
            self._reader = _fastread.Reader(self.fd, self, self._deliver, self._closed_errno)
            loop.add_reader(self.fd, self._reader)
        else:
            loop.add_reader(self.fd, self._readable)

    def arm(self, event: EventSink | None,
            error: Callable[[BaseException], None] | None = None) -> bool:
        """While nothing is buffered, hand every leading whole HTTP chunk of a read that holds
        one single-line SSE ``data: X`` event (X not ``[DONE]``) to ``event(X, arrival)``, one
        call each, bypassing the sink, which gets the rest of the read; what ``event`` raises
        goes to ``error``. None disarms. False: no C reader here, so nothing is armed."""
        if self._hub is not None:
            self._event, self._error = event, error
            return True
        if self._reader is None:
            return False
        self._reader.arm(event, error)
        return True

    def _pumped(self, taken: Taken) -> None:
        """What the reader thread read since its last look, read by read as the C reader would
        have handed each over, then the end of the stream if it came."""
        reads, finished, err, _, last = taken
        self.last = last
        if reads:
            self.arrival = reads[-1][1]
        buf, deliver = self.buf, self._deliver
        for data, arrival, one in reads:
            if one:  # one whole chunk holding one single-line event; data is its X
                event = self._event  # (an event may disarm: looked up every time)
                if event is not None and not buf:
                    try:
                        event(data, arrival)
                    except Exception as exc:  # noqa: BLE001 - to the armed error callback
                        if self._error is None:
                            raise
                        self._error(exc)
                    continue
                data = b"%x\r\ndata: %s\n\n\r\n" % (len(data) + 8, data)  # the same chunk
            deliver(data, arrival)
        if finished:
            self._wake_closed(OSError(err, os.strerror(err)) if err else None)

    def _closed_errno(self, errno: int) -> None:
        self._wake_closed(OSError(errno, os.strerror(errno)) if errno else None)

    def _readable(self) -> None:
        try:
            data, anc, _, _ = self.sock.recvmsg(_READ, 64)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._wake_closed(exc)
            return
        if not data:
            self._wake_closed(None)
            return
        now = self.last = time.perf_counter()
        if anc:
            sec, ns = _unpack_ts(anc[0][2])
            arrival = to_perf(sec, ns, now)
            self.arrival = arrival if now - 30.0 < arrival <= now else now
        self._deliver(data, self.arrival)

    def _deliver(self, data: bytes, arrival: float | None) -> None:
        if self.sink is not None:
            self.sink(data, arrival)  # push mode: straight to the response (no copy)
            return
        _note_read(self.buf, self.reads, len(data), arrival)
        self.buf += data
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def take_reads(self) -> list[tuple[bytes, float | None]]:
        return _take_reads(self.buf, self.reads)

    def _wake_closed(self, exc: BaseException | None) -> None:
        if not self.closed:
            self.loop.remove_reader(self.fd)
        self.closed = True
        self.exc = self.exc or exc
        if self.sink is not None:
            self.sink(None, self.arrival)
            return
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        if self._out:
            self._out += data
            return
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self._wake_closed(exc)
            return
        if sent < len(data):
            self._out = data[sent:]
            self.loop.add_writer(self.fd, self._writable)

    def _writable(self) -> None:
        try:
            sent = self.sock.send(self._out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.loop.remove_writer(self.fd)
            self._wake_closed(exc)
            return
        self._out = self._out[sent:]
        if not self._out:
            self.loop.remove_writer(self.fd)

    async def wait(self, timeout: float | None) -> None:
        await _wait(self, timeout)

    def close(self) -> None:
        if self._slot >= 0 and self._hub is not None:  # never close what the thread may read
            self._hub.remove(self._slot)
            self._slot = -1
        if self.fd >= 0:
            self.loop.remove_reader(self.fd)
            if self._out:
                self.loop.remove_writer(self.fd)
            self.sock.close()
            self.fd = -1
        self.closed = True


Conn = _Conn | _SockConn


def _note_read(buf: bytearray, reads: list[tuple[int, float | None]], size: int,
               arrival: float | None) -> None:
    """Remember a read about to be appended to ``buf`` (its size and arrival)."""
    if not buf:
        reads.clear()  # what was buffered before has been taken
    elif len(reads) >= _MAX_READS:
        del reads[: _MAX_READS // 2]  # their bytes then count as the oldest kept read's
    reads.append((size, arrival))


def _take_reads(buf: bytearray, reads: list[tuple[int, float | None]]
                ) -> list[tuple[bytes, float | None]]:
    """The buffered bytes (then cleared) split back into the reads that brought them, oldest
    first, each with its arrival. Why: a response whose coroutine starts reading late (the head
    came with the first chunk, the next chunks arrived before it ran) still gives every chunk
    its own arrival, not the latest one's. Bytes older than the reads kept (the buffer's front,
    from before the cap) count as the oldest kept read's."""
    out: list[tuple[bytes, float | None]] = []
    end = len(buf)
    arrival: float | None = None
    for size, arrival in reversed(reads):
        if end <= 0:
            break
        start = max(0, end - size)
        out.append((bytes(buf[start:end]), arrival))
        end = start
    if end > 0:
        out.append((bytes(buf[:end]), arrival))
    buf.clear()
    reads.clear()
    out.reverse()
    return out


async def _wait(conn: Conn, timeout: float | None) -> None:
    """Wait for more bytes (or close); TimeoutError after ``timeout`` seconds of silence."""
    loop = conn.loop
    fut = loop.create_future()
    conn.waiter = fut
    handle = None
    if timeout is not None:
        handle = loop.call_later(timeout, _expire, fut)
    try:
        await fut
    finally:
        conn.waiter = None
        if handle is not None:
            handle.cancel()


def fast_reads_enabled() -> bool:
    """The C read path (``_fastread``) where it was built; SERVEMARK_FAST_READS=0 reads in
    Python instead (same results: the tests run both)."""
    return os.environ.get("SERVEMARK_FAST_READS", "1") != "0"


def kernel_timestamps_enabled() -> bool:
    """Receive timestamps from the kernel (Linux, plain HTTP); SERVEMARK_KERNEL_TIMESTAMPS=0
    turns them off (then arrival is when the event loop read the bytes)."""
    return sys.platform == "linux" and os.environ.get("SERVEMARK_KERNEL_TIMESTAMPS", "1") != "0"


def _expire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError("no data from the server within the read timeout"))


class _Hex(dict[int, bytes]):
    """Chunk-size line for a payload length (lower-case hex, as servers write it), memoized."""

    def __missing__(self, n: int) -> bytes:
        value = self[n] = b"%x" % n
        return value


_HEX = _Hex()
_LAST = b"\r\n0\r\n\r\n"


def _dechunk_whole(data: bytes) -> tuple[bytes, bool] | None:
    """Bulk de-chunking at C speed when ``data`` is whole chunks whose payloads hold no CR/LF pair
    (SSE streams usually: one event per chunk): split on CRLF, then check that every size line
    equals its payload's length — the first payload containing CRLF would come out shorter than
    its size, so a pass proves the split was the framing. None: use the general loop."""
    if data.endswith(_LAST):
        parts = data[:-7].split(b"\r\n")
        finished = True
    elif data.endswith(b"\r\n"):
        parts = data[:-2].split(b"\r\n")
        finished = False
    else:
        return None
    if len(parts) & 1:
        return None
    payloads = parts[1::2]
    sizes = parts[0::2]
    # a zero size is the last chunk (maybe with trailers): the general loop handles it
    if sizes != list(map(_HEX.__getitem__, map(len, payloads))) or b"0" in sizes:
        return None
    return b"".join(payloads), finished


def _whole_chunk(data: bytes) -> bytes | None:
    """The payload when ``data`` is exactly one non-empty chunk (size line, payload, CRLF)."""
    eol = data.find(b"\r\n")
    if 0 < eol < 9:
        try:
            size = int(data[:eol], 16)
        except ValueError:  # chunk extensions or garbage: the general loop says which
            return None
        stop = eol + 2 + size
        if size and stop + 2 == len(data) and data.endswith(b"\r\n"):
            return data[eol + 2:stop]
    return None


class _Response:
    """One response on one connection; the body is consumed incrementally."""

    __slots__ = ("_chunked", "_conn", "_deadline", "_done", "_keep_alive", "_read_timeout",
                 "_remaining", "headers", "status")

    def __init__(self, conn: Conn, read_timeout: float | None, deadline: float | None) -> None:
        self._conn = conn
        self._read_timeout = read_timeout
        self._deadline = deadline
        self.status = 0
        self.headers: dict[str, str] = {}
        self._chunked = False
        self._remaining: int | None = None
        self._keep_alive = True
        self._done = False

    def _timeout(self) -> float | None:
        if self._deadline is None:
            return self._read_timeout
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request exceeded its total timeout")
        return left if self._read_timeout is None else min(left, self._read_timeout)

    async def _more(self) -> None:
        conn = self._conn
        if conn.closed:
            raise ConnectionResetError("server closed the connection mid-response") from conn.exc
        await conn.wait(self._timeout())

    async def read_head(self) -> None:
        conn = self._conn
        while True:
            end = conn.buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if conn.closed:
                raise ConnectionResetError("server closed the connection before responding")
            await conn.wait(self._timeout())
        head = bytes(conn.buf[:end]).decode("latin-1")
        del conn.buf[: end + 4]
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise HttpProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        self.status = int(parts[1])
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self._chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        if not self._chunked and "content-length" in self.headers:
            self._remaining = int(self.headers["content-length"])
        conn_hdr = self.headers.get("connection", "").lower()
        self._keep_alive = parts[0] == "HTTP/1.1" and conn_hdr != "close"
        if not self._chunked and self._remaining is None:
            self._keep_alive = False  # body runs until the server closes
        if self._remaining == 0 or self.status in (204, 304):
            self._done = True

    def _dechunk(self, fresh: bytes | None = None) -> tuple[bytes, bool]:
        """Remove every complete chunk from the buffer and ``fresh`` (bytes just read, not yet
        buffered); return their payload and whether the terminating zero-size chunk was seen.
        What is left of an incomplete chunk stays in the buffer. ``fresh`` with nothing buffered
        is not tried as one whole chunk again: the push reader did that before calling this."""
        buf = self._conn.buf
        if fresh is None:
            data = bytes(buf)
        elif buf:
            buf += fresh
            data = bytes(buf)
        else:
            data = fresh  # the common case: nothing pending, no copy
        if data is not fresh:
            one = _whole_chunk(data)  # a paced stream's usual read
            if one is not None:
                buf.clear()
                return one, False
        fast = _dechunk_whole(data)
        if fast is not None:
            if buf:
                buf.clear()
            return fast
        find = data.find
        n = len(data)
        out: list[bytes] = []
        pos = 0
        finished = False
        while True:
            eol = find(b"\r\n", pos)
            if eol < 0:
                break
            try:
                size = int(data[pos:eol], 16)
            except ValueError:
                size_text = data[pos:eol].split(b";", 1)[0].strip()  # chunk extensions
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise HttpProtocolError(f"bad chunk size {size_text[:20]!r}") from None
            if size == 0:
                # the last chunk: optional trailers, then an empty line
                end = find(b"\r\n\r\n", eol)
                if end >= 0:
                    pos = end + 4
                    finished = True
                break
            start = eol + 2
            stop = start + size
            if stop + 2 > n:
                break
            out.append(data[start:stop])
            pos = stop + 2
        if data is fresh:
            buf += data[pos:]
        elif pos:
            del buf[:pos]
        return (out[0] if len(out) == 1 else b"".join(out)), finished

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        conn = self._conn
        while not self._done:
            if self._chunked:
                data, finished = self._dechunk()
                if finished:
                    self._done = True
                if data:
                    yield data
                if not self._done:
                    await self._more()
            elif self._remaining is not None:
                if conn.buf:
                    take = min(len(conn.buf), self._remaining)
                    data = bytes(conn.buf[:take])
                    del conn.buf[:take]
                    self._remaining -= take
                    if self._remaining == 0:
                        self._done = True
                    yield data
                else:
                    await self._more()
            else:
                if conn.buf:
                    data = bytes(conn.buf)
                    conn.buf.clear()
                    yield data
                elif conn.closed:
                    self._done = True
                else:
                    await conn.wait(self._timeout())

    async def read(self) -> bytes:
        return b"".join([c async for c in self.iter_chunks()])

    @property
    def can_push(self) -> bool:
        """Whether :meth:`push` applies (a chunked body still being read)."""
        return self._chunked and not self._done

    async def push(self, consumer: Callable[[bytes, float | None], None],
                   event: EventSink | None = None) -> None:
        """Read the rest of a chunked body by callbacks: after every network read the connection
        de-chunks what arrived and hands it to ``consumer(payload, arrival)`` at once, inside the
        event loop's read callback. Why: no future, task wake-up or timer per read (the coroutine
        wakes once, at the end), which is most of a paced stream's per-read cost. Raises what
        :meth:`iter_chunks` would (timeouts, resets, bad framing, and what ``consumer`` raises).
        ``event``: where the connection has a C reader, the whole chunks at the front of a read
        that each hold one single-line SSE ``data: X`` event go to ``event(X, arrival)``
        instead, one call each with no Python in between (``consumer`` gets the rest); ``event``
        must give the same result as ``consumer`` on those bytes."""
        conn = self._conn
        loop = conn.loop
        done: asyncio.Future[None] = loop.create_future()
        buf = conn.buf
        sock = conn if event is not None and isinstance(conn, _SockConn) else None
        armed = False

        def stop(exc: BaseException | None = None) -> None:
            if armed and sock is not None:
                sock.arm(None)
            if not done.done():
                if exc is None:
                    done.set_result(None)
                else:
                    done.set_exception(exc)

        def on_data(fresh: bytes | None, arrival: float | None) -> None:
            if done.done():
                if fresh:
                    buf.extend(fresh)
                return
            try:
                if fresh and not buf:  # the common read: one whole chunk, nothing pending
                    one = _whole_chunk(fresh)
                    if one is not None:
                        consumer(one, arrival)
                        return
                if fresh or buf:
                    data, finished = self._dechunk(fresh)
                    if data:
                        consumer(data, arrival)
                    if finished:
                        self._done = True
                        stop()
                        return
                if conn.closed:
                    err = ConnectionResetError("server closed the connection mid-response")
                    err.__cause__ = conn.exc
                    raise err
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting coroutine
                stop(exc)

        read_timeout, deadline = self._read_timeout, self._deadline
        handle: asyncio.TimerHandle | None = None

        def check() -> None:  # one timer per response, re-armed only when it fires
            nonlocal handle
            if done.done():
                return
            wait = None
            if deadline is not None:
                wait = deadline - time.monotonic()
                if wait <= 0:
                    stop(TimeoutError("request exceeded its total timeout"))
                    return
            if read_timeout is not None:
                idle = time.perf_counter() - conn.last
                if idle >= read_timeout:
                    stop(TimeoutError("no data from the server within the read timeout"))
                    return
                wait = read_timeout - idle if wait is None else min(wait, read_timeout - idle)
            if wait is not None:
                handle = loop.call_later(wait, check)

        conn.last = time.perf_counter()
        conn.sink = on_data
        try:
            # body bytes read before this (with the head, or while this coroutine waited to
            # run), read by read so that each chunk keeps its own arrival
            for data, arrival in conn.take_reads():
                on_data(data, arrival)
            on_data(None, conn.arrival)
            if sock is not None and not done.done():
                armed = sock.arm(event, stop)
            check()
            await done
        finally:
            if armed and sock is not None:
                sock.arm(None)
            conn.sink = None
            if handle is not None:
                handle.cancel()

    @property
    def arrival(self) -> float | None:
        """Kernel receive time of the latest bytes (``time.perf_counter`` clock), or None."""
        return self._conn.arrival

    @property
    def reusable(self) -> bool:
        return self._done and self._keep_alive and not self._conn.closed and not self._conn.buf


class FastTransport:
    """Keep-alive connection pool per host; implements the Transport protocol."""

    def __init__(self, max_connections: int = 0, timeouts: Timeouts | None = None) -> None:
        self._timeouts = timeouts or Timeouts()
        self._idle: dict[tuple[str, str, int], list[Conn]] = {}
        self._all: set[Conn] = set()
        self._kernel_ts = kernel_timestamps_enabled()
        self._ssl: ssl_module.SSLContext | None = None
        self._max = max_connections
        self._heads: dict[tuple[str, str, tuple[tuple[str, str], ...]],
                          tuple[tuple[str, str, int], bytes]] = {}
        self._pump = pump_enabled()
        self._hub: PumpHub | None = None

    def _hub_here(self) -> PumpHub | None:
        """The reader thread of the running loop (started with the first connection)."""
        if not self._pump:
            return None
        loop = asyncio.get_running_loop()
        if self._hub is None or self._hub.loop is not loop or self._hub.closed:
            if self._hub is not None:  # a transport used on a second loop: the old one is gone
                self._hub.close()
            self._hub = PumpHub(loop)
        return self._hub

    async def _connect(self, scheme: str, host: str, port: int) -> Conn:
        if scheme == "http" and self._kernel_ts:
            conn: Conn = await asyncio.wait_for(self._connect_sock(host, port), self._timeouts.connect)
            self._all.add(conn)
            return conn
        return await self._connect_transport(scheme, host, port)

    async def _connect_sock(self, host: str, port: int) -> _SockConn:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        error: OSError | None = None
        for family, kind, proto, _, addr in infos:
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with contextlib.suppress(OSError):  # without it reads simply carry no stamp
                    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                await loop.sock_connect(sock, addr)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            except BaseException:
                sock.close()
                raise
            return _SockConn(loop, sock, self._hub_here())
        raise error or OSError(f"cannot resolve {host}")

    async def _connect_transport(self, scheme: str, host: str, port: int) -> _Conn:
        loop = asyncio.get_running_loop()
        ssl = None
        if scheme == "https":
            self._ssl = self._ssl or ssl_module.create_default_context()
            ssl = self._ssl
        coro = loop.create_connection(lambda: _Conn(loop), host, port, ssl=ssl)
        _, conn = await asyncio.wait_for(coro, self._timeouts.connect)
        if conn.transport is not None:
            sock = conn.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._all.add(conn)
        return conn

    def _head(self, request: HttpRequest) -> tuple[tuple[str, str, int], bytes]:
        """The pool key and the request head up to its Content-Length line, memoized per
        method, URL and headers: a load point sends the same few heads thousands of times."""
        memo = (request.method, request.url, tuple(request.headers.items()))
        hit = self._heads.get(memo)
        if hit is not None:
            return hit
        parts = urlsplit(request.url)
        scheme = parts.scheme or "http"
        host = parts.hostname or "localhost"
        port = parts.port or (443 if scheme == "https" else 80)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        host_header = host if parts.port is None else f"{host}:{port}"
        head = [f"{request.method} {path} HTTP/1.1", f"Host: {host_header}",
                "User-Agent: servemark", "Accept-Encoding: identity"]
        head.extend(f"{k}: {v}" for k, v in request.headers.items())
        value = (scheme, host, port), ("\r\n".join(head) + "\r\n").encode("latin-1")
        if len(self._heads) >= 1024:  # unbounded variety (per-request headers): start over
            self._heads.clear()
        self._heads[memo] = value
        return value

    @asynccontextmanager
    async def open(self, request: HttpRequest) -> AsyncIterator[StreamResponse]:
        key, head = self._head(request)
        scheme, host, port = key
        idle = self._idle.setdefault(key, [])
        body = request.body or b""
        if body or request.method in ("POST", "PUT", "PATCH"):
            wire = b"%sContent-Length: %d\r\n\r\n%s" % (head, len(body), body)
        else:
            wire = head + b"\r\n"
        t = self._timeouts
        deadline = time.monotonic() + t.total if t.total else None
        # A pooled connection the server closed while idle fails before any response byte;
        # then (only then) the request is sent again on a fresh connection.
        while True:
            conn, reused = None, False
            while idle:
                candidate = idle.pop()
                if not candidate.closed:
                    conn, reused = candidate, True
                    break
                self._all.discard(candidate)
            if conn is None:
                conn = await self._connect(scheme, host, port)
            conn.write(wire)
            resp = _Response(conn, t.read, deadline)
            try:
                await resp.read_head()
            except ConnectionResetError:
                conn.close()
                self._all.discard(conn)
                if reused and not conn.buf:
                    continue
                raise
            except BaseException:
                conn.close()
                self._all.discard(conn)
                raise
            break
        ok = False
        try:
            yield resp
            ok = True
        finally:
            if ok and resp.reusable:
                idle.append(conn)
            else:
                conn.close()
                self._all.discard(conn)

    async def close(self) -> None:
        for conn in list(self._all):
            conn.close()
        self._all.clear()
        self._idle.clear()
        if self._hub is not None:
            self._hub.close()
            self._hub = None
