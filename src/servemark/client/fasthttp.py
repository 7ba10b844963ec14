"""A small, fast HTTP/1.1 client transport on asyncio protocols (keep-alive pool, chunked bodies).

Why not aiohttp on the hot path: a load generator must not be the bottleneck. This transport does
the minimum per network read — append to a buffer, wake one waiter — and de-chunks every complete
HTTP chunk present in one pass, yielding them together, so per-event costs stay in the SSE layer.
It speaks only what OpenAI-compatible servers need: request with a body, status + headers,
Content-Length / chunked / until-close bodies, keep-alive. TLS works through ``ssl``.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from servemark.client.transport import HttpRequest, StreamResponse, Timeouts


class HttpProtocolError(ConnectionError):
    """The server's bytes are not valid HTTP/1.1."""


class _Conn(asyncio.Protocol):
    __slots__ = ("buf", "closed", "exc", "loop", "transport", "waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.exc: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
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
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def wait(self, timeout: float | None) -> None:
        """Wait for more bytes (or close); TimeoutError after ``timeout`` seconds of silence."""
        fut = self.loop.create_future()
        self.waiter = fut
        handle = None
        if timeout is not None:
            handle = self.loop.call_later(timeout, _expire, fut)
        try:
            await fut
        finally:
            self.waiter = None
            if handle is not None:
                handle.cancel()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.closed = True


def _expire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError("no data from the server within the read timeout"))


class _Response:
    """One response on one connection; the body is consumed incrementally."""

    __slots__ = ("_chunked", "_conn", "_deadline", "_done", "_keep_alive", "_read_timeout",
                 "_remaining", "headers", "status")

    def __init__(self, conn: _Conn, read_timeout: float | None, deadline: float | None) -> None:
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

    def _dechunk(self) -> tuple[bytes, bool]:
        """Remove every complete chunk from the buffer; return their payload and whether the
        terminating zero-size chunk was seen."""
        buf = self._conn.buf
        data = bytes(buf)
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
        if pos:
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
    def reusable(self) -> bool:
        return self._done and self._keep_alive and not self._conn.closed and not self._conn.buf


class FastTransport:
    """Keep-alive connection pool per host; implements the Transport protocol."""

    def __init__(self, max_connections: int = 0, timeouts: Timeouts | None = None) -> None:
        self._timeouts = timeouts or Timeouts()
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self._all: set[_Conn] = set()
        self._ssl: ssl_module.SSLContext | None = None
        self._max = max_connections

    async def _connect(self, scheme: str, host: str, port: int) -> _Conn:
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
                import socket

                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._all.add(conn)
        return conn

    @asynccontextmanager
    async def open(self, request: HttpRequest) -> AsyncIterator[StreamResponse]:
        parts = urlsplit(request.url)
        scheme = parts.scheme or "http"
        host = parts.hostname or "localhost"
        port = parts.port or (443 if scheme == "https" else 80)
        key = (scheme, host, port)
        idle = self._idle.setdefault(key, [])
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        host_header = host if parts.port is None else f"{host}:{port}"
        body = request.body or b""
        head = [f"{request.method} {path} HTTP/1.1", f"Host: {host_header}",
                "User-Agent: servemark", "Accept-Encoding: identity"]
        head.extend(f"{k}: {v}" for k, v in request.headers.items())
        if body or request.method in ("POST", "PUT", "PATCH"):
            head.append(f"Content-Length: {len(body)}")
        wire = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
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
            assert conn.transport is not None
            conn.transport.write(wire)
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
