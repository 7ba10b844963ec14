"""The one seam in front of the network: ``Transport.open(request)`` yields a streaming response.

``AiohttpTransport`` is the real implementation (one pooled session per run, keep-alive,
configurable timeouts); ``FakeTransport`` replays scripted chunks with scripted delays for unit
tests of everything above the network.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    url: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


class StreamResponse(Protocol):
    status: int

    @property
    def headers(self) -> Mapping[str, str]:
        """Response headers: lower-case names (FastTransport) or case-insensitive (aiohttp)."""
        ...

    def iter_chunks(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive, in whatever pieces the network delivers."""
        ...

    async def read(self) -> bytes:
        """The whole (remaining) body."""
        ...


class Transport(Protocol):
    def open(self, request: HttpRequest) -> AbstractAsyncContextManager[StreamResponse]:
        """An async context manager around one response (``async with t.open(req) as resp``)."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds; None disables. ``read`` bounds the silence between two network reads."""

    connect: float | None = 30.0
    read: float | None = 600.0
    total: float | None = None


class _AiohttpResponse:
    __slots__ = ("_resp", "headers", "status")

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self.status = resp.status
        self.headers: Mapping[str, str] = resp.headers

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self._resp.content.iter_any():
            yield chunk

    async def read(self) -> bytes:
        return await self._resp.read()


class AiohttpTransport:
    """Pooled aiohttp session: one per run, connections reused across requests."""

    def __init__(self, max_connections: int = 0, timeouts: Timeouts | None = None) -> None:
        t = timeouts or Timeouts()
        self._timeout = aiohttp.ClientTimeout(
            total=t.total, sock_connect=t.connect, connect=t.connect, sock_read=t.read
        )
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, limit_per_host=0, ttl_dns_cache=300, force_close=False
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                auto_decompress=False,
                skip_auto_headers=("User-Agent",),
                headers={"User-Agent": "servemark", "Accept-Encoding": "identity"},
            )
        return self._session

    @asynccontextmanager
    async def open(self, request: HttpRequest) -> AsyncIterator[StreamResponse]:
        session = self._get_session()
        async with session.request(
            request.method, request.url, data=request.body, headers=request.headers
        ) as resp:
            yield _AiohttpResponse(resp)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


@dataclass
class FakeReply:
    """A scripted response: status, then (delay_s, bytes) pieces; ``raise_after`` simulates a drop."""

    status: int = 200
    pieces: Sequence[tuple[float, bytes]] = ()
    raise_after: BaseException | None = None
    headers: dict[str, str] = field(default_factory=dict)


class _FakeResponse:
    def __init__(self, reply: FakeReply) -> None:
        self._reply = reply
        self.status = reply.status
        self.headers: Mapping[str, str] = reply.headers

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        for delay, piece in self._reply.pieces:
            if delay:
                await asyncio.sleep(delay)
            yield piece
        if self._reply.raise_after is not None:
            raise self._reply.raise_after

    async def read(self) -> bytes:
        return b"".join([p async for p in self.iter_chunks()])


class FakeTransport:
    """Replays replies in order (the last one repeats); records the requests it saw."""

    def __init__(self, replies: Sequence[FakeReply]) -> None:
        self._replies = list(replies)
        self.requests: list[HttpRequest] = []

    @asynccontextmanager
    async def open(self, request: HttpRequest) -> AsyncIterator[StreamResponse]:
        self.requests.append(request)
        idx = min(len(self.requests) - 1, len(self._replies) - 1)
        yield _FakeResponse(self._replies[idx])

    async def close(self) -> None:
        return None
