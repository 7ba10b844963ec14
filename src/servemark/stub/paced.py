"""The paced stub engine (``--engine fast``): exact chunk timing for thousands of streams.

Why a second engine: the asyncio one (a coroutine and a sleep per chunk per stream) cannot emit
1,024 × 100 chunks/s on one core, and its schedule starts when it *parsed* a request, so a burst
of requests parsed late is invisible in its lateness yet lands in the client's TTFT. Here:

- raw non-blocking sockets on the running loop; every read is a ``recvmsg`` with the kernel's
  receive time (SO_TIMESTAMPNS, converted to ``perf_counter`` as servemark's client does), so a
  request's arrival is when the read that completed it reached this machine (the read time when
  no stamp comes);
- the first chunk is due at arrival + ttft, chunk i at arrival + ttft + i·itl (absolute);
- ONE scheduler for all streams: first chunks in a heap, later chunks in a FIFO that is sorted by
  construction (every stream's next is its last + itl, and they leave in due order); one wake-up
  (a timerfd with nanosecond deadlines where Linux allows, else ``call_later`` re-armed so nothing
  leaves early) sends every chunk that is due, each with its own ``send``; partial sends go to a
  per-connection buffer drained with ``add_writer``.

Same routes and bytes as the asyncio engine (:mod:`servemark.stub.wire`); no faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import os
import socket
import struct
import time
from collections import deque
from typing import Any

from servemark.client.kernelstamp import to_perf
from servemark.stub.timer import Timer
from servemark.stub.wire import (
    DONE,
    END,
    HEAD_SSE,
    BodyCache,
    Plan,
    Stats,
    StubConfig,
    info_response,
    parse_generation,
    response,
)

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; Python does not export it
_READ = 1 << 16
_MAX_HEAD = 1 << 20
_unpack_ts = struct.Struct("qq").unpack_from
_INF = float("inf")
_pc = time.perf_counter
_SLICE_S = 0.002  # the scheduler yields to reads and accepts at least this often
_BAD_REQUEST = response(400, b'{"error":{"message":"malformed HTTP request"}}')


class _Stream:
    """One paced response: chunk ``i`` is due at ``t0 + i * itl``; the first carries the head,
    the last the tail. A non-streamed response is one "chunk" that does not count as paced."""

    __slots__ = ("conn", "counted", "due", "finish", "first", "i", "last", "middle", "sent", "t0",
                 "tokens")

    def __init__(self, conn: _Conn, t0: float, parts: _Parts, tokens: int,
                 counted: bool = True) -> None:
        self.conn = conn
        self.t0 = self.due = t0
        self.i = 0
        self.last, self.first, self.middle, self.finish = parts
        self.tokens = tokens
        self.counted = counted
        self.sent = 0.0  # when the previous chunk left


_Parts = tuple[int, bytes, bytes, bytes]  # last chunk's index, first, middle and last bytes


class _Conn:
    """One client connection: reads with kernel stamps, parses requests (keep-alive, pipelined,
    split across reads), answers them in order, buffers what the socket does not take."""

    __slots__ = ("buf", "busy", "closed", "engine", "fd", "free_at", "out", "pending", "sock")

    def __init__(self, engine: PacedStub, sock: socket.socket) -> None:
        self.engine = engine
        self.sock = sock
        self.fd = sock.fileno()
        self.buf = bytearray()
        self.out = bytearray()
        self.closed = False
        self.busy = False  # a paced response is under way: later requests wait in ``pending``
        self.free_at = 0.0  # when the last paced response ended
        self.pending: deque[tuple[bytes, bytes, bytes, float]] = deque()
        engine.loop.add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        try:
            data, anc, _, _ = self.sock.recvmsg(_READ, 64)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if not data:
            self.close()
            return
        now = _pc()
        arrival = now
        if anc:
            sec, ns = _unpack_ts(anc[0][2])
            t = to_perf(sec, ns, now)
            if now - 30.0 < t <= now:
                arrival = t
        self.buf += data
        self._parse(arrival)

    def _parse(self, arrival: float) -> None:
        buf = self.buf
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > _MAX_HEAD:
                    self.send(_BAD_REQUEST)
                    self.close()
                return
            lines = bytes(buf[:end]).split(b"\r\n")
            parts = lines[0].split(b" ", 2)
            length = 0
            try:
                for line in lines[1:]:
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
            except ValueError:
                length = -1
            if len(parts) != 3 or length < 0:
                self.send(_BAD_REQUEST)
                self.close()
                return
            total = end + 4 + length
            if len(buf) < total:
                return
            body = bytes(buf[end + 4:total])
            del buf[:total]
            self.pending.append((parts[0], parts[1].split(b"?")[0], body, arrival))
            if not self.busy:
                self.next_request()
            if self.closed:
                return

    def next_request(self) -> None:
        """Answer waiting requests in order until one starts a paced response."""
        while self.pending and not self.busy and not self.closed:
            method, path, body, arrival = self.pending.popleft()
            self.engine.handle(self, method, path, body, arrival)

    def send(self, data: bytes) -> None:
        if self.closed:
            return
        if self.out:
            self.out += data
            return
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.close()
            return
        if sent < len(data):
            self.out += data[sent:]
            self.engine.loop.add_writer(self.fd, self._writable)

    def _writable(self) -> None:
        try:
            sent = self.sock.send(self.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        del self.out[:sent]
        if not self.out:
            self.engine.loop.remove_writer(self.fd)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        loop = self.engine.loop
        loop.remove_reader(self.fd)
        if self.out:
            loop.remove_writer(self.fd)
        self.pending.clear()
        self.engine.conns.discard(self)
        with contextlib.suppress(OSError):
            self.sock.close()


class PacedStub:
    """The engine: accepts, parses, and paces every stream from one scheduler."""

    def __init__(self, cfg: StubConfig, loop: asyncio.AbstractEventLoop) -> None:
        self.cfg = cfg
        self.loop = loop
        self.stats = Stats()
        self.conns: set[_Conn] = set()
        self.firsts: list[tuple[float, int, _Stream]] = []  # heap: (due, seq, stream)
        self.nexts: deque[_Stream] = deque()  # later chunks, in due order by construction
        self._seq = 0
        self._bodies = BodyCache()  # whole unpaced responses
        self._parts: dict[tuple[bool, int, int, bool], _Parts] = {}  # paced ones, by chunk
        self.timer = Timer(loop, self._run)
        self.lsock: socket.socket | None = None
        # a wake-up from epoll takes tens of µs here: a chunk due sooner is waited for in a spin
        self._soon = False
        self.spin = float(os.environ.get("SERVEMARK_STUB_SPIN_US", "20")) * 1e-6

    def listen(self, host: str, port: int) -> int:
        lsock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with contextlib.suppress(OSError):  # accepted sockets inherit it; without it: read times
            lsock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        lsock.bind((host, port))
        lsock.listen(4096)
        lsock.setblocking(False)
        self.lsock = lsock
        self.loop.add_reader(lsock.fileno(), self._accept)
        return int(lsock.getsockname()[1])

    def _accept(self) -> None:
        assert self.lsock is not None
        for _ in range(512):
            try:
                sock, _ = self.lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. out of file descriptors: the client sees its connect time out
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            self.conns.add(_Conn(self, sock))

    def close(self) -> None:
        self.timer.close()
        if self.lsock is not None:
            self.loop.remove_reader(self.lsock.fileno())
            self.lsock.close()
            self.lsock = None
        for conn in list(self.conns):
            conn.close()

    def handle(self, conn: _Conn, method: bytes, path: bytes, body: bytes, arrival: float) -> None:
        cfg = self.cfg
        answer = info_response(cfg, self.stats, method, path, body)
        if answer is not None:
            conn.send(answer)
            return
        now = _pc()
        st = self.stats
        st.request(arrival)
        delay = now - arrival
        st.parsed += 1
        st.parse_delay_s += delay
        if delay > st.max_parse_delay_s:
            st.max_parse_delay_s = delay
        req, error = parse_generation(cfg, body)
        if req is None:
            conn.send(error or _BAD_REQUEST)
            return
        plan = Plan(cfg, path == b"/v1/chat/completions", req)
        # a pipelined request waited for the response before it: its schedule starts after that
        t0 = max(arrival, conn.free_at)
        if not plan.stream:
            if not cfg.paced:
                conn.send(plan.whole())
                st.completed(plan.n)
                return
            self._start(_Stream(conn, t0 + cfg.ttft_s + cfg.itl_s * max(plan.n - 1, 0),
                                (0, plan.whole(), b"", b""), plan.n, counted=False))
            return
        if not cfg.paced:
            conn.send(HEAD_SSE + self._bodies.body(plan))
            st.completed(plan.n)
            return
        if plan.chunks <= 0:
            conn.send(HEAD_SSE + plan.tail() + DONE + END)
            st.completed(plan.n)
            return
        key = plan.key()
        parts = self._parts.get(key)
        if parts is None:  # the head leaves with the first chunk: one send less per request
            last = plan.chunks - 1
            finish = plan.payload(last) + plan.tail() + DONE + END
            parts = (last, HEAD_SSE + (plan.payload(0) if last else finish), plan.middle, finish)
            if len(self._parts) < 256:
                self._parts[key] = parts
        self._start(_Stream(conn, t0 + cfg.ttft_s, parts, plan.n))

    def _start(self, s: _Stream) -> None:
        s.conn.busy = True
        self._seq += 1
        heapq.heappush(self.firsts, (s.due, self._seq, s))
        if s.due <= _pc():
            self._run()
        else:
            self.timer.arm(s.due - self.spin)

    def _run(self) -> None:
        """Send every chunk that is due, in due order, each with its own send; re-arm."""
        firsts, nexts, st, itl, spin = self.firsts, self.nexts, self.stats, self.cfg.itl_s, self.spin
        popleft, append, heappop = nexts.popleft, nexts.append, heapq.heappop
        late_first = late_next = gaps = 0.0
        n_first = n_next = 0
        max_first, max_next = st.max_late_first_s, st.max_late_next_s
        done: list[_Stream] = []
        now = start = _pc()
        while True:
            nd = nexts[0].due if nexts else _INF
            if firsts and firsts[0][0] < nd:
                due = firsts[0][0]
                first = True
            else:
                due = nd
                first = False
            if due > now:
                now = _pc()
                if due > now:
                    if due - now > spin:
                        break
                    while due > now:  # due within a wake-up's latency: wait here, not in epoll
                        now = _pc()
            if now - start > _SLICE_S:  # overloaded: let requests in (their stamps stay exact)
                break
            s = heappop(firsts)[2] if first else popleft()
            conn = s.conn
            if conn.closed:
                continue
            i = s.i
            data = s.middle if 0 < i < s.last else (s.finish if i else s.first)
            # conn.send, inlined: this is the per-chunk hot path
            if conn.out:
                conn.out += data
            else:
                try:
                    sent = conn.sock.send(data)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                except OSError:
                    conn.close()
                    continue
                if sent < len(data):
                    conn.out += data[sent:]
                    self.loop.add_writer(conn.fd, conn._writable)
            now = _pc()
            if s.counted:
                late = now - due
                if i:
                    late_next += late
                    gaps += now - s.sent
                    n_next += 1
                    if late > max_next:
                        max_next = late
                else:
                    late_first += late
                    n_first += 1
                    if late > max_first:
                        max_first = late
            s.sent = now
            if i < s.last:
                s.i = i = i + 1
                s.due = s.t0 + i * itl
                append(s)
            else:
                done.append(s)
        st.late_first_s += late_first
        st.late_next_s += late_next
        st.gaps_s += gaps
        st.firsts += n_first
        st.nexts += n_next
        st.max_late_first_s, st.max_late_next_s = max_first, max_next
        for s in done:
            st.completed(s.tokens)
            s.conn.busy = False
            s.conn.free_at = now
            s.conn.next_request()
        nd = nexts[0].due if nexts else _INF
        if firsts and firsts[0][0] < nd:
            nd = firsts[0][0]
        if nd <= now:  # it yielded: run again right after the loop has looked at the sockets
            if not self._soon:
                self._soon = True
                self.loop.call_soon(self._run_soon)
        elif nd < _INF:
            self.timer.arm(nd - spin)

    def _run_soon(self) -> None:
        self._soon = False
        self._run()


async def serve(cfg: StubConfig, host: str = "127.0.0.1", port: int = 0,
                ready: asyncio.Future[int] | None = None) -> None:
    """Serve forever (cancel to stop); ``ready`` receives the bound port."""
    loop = asyncio.get_running_loop()
    stub = PacedStub(cfg, loop)
    try:
        bound = stub.listen(host, port)
        if ready is not None:
            ready.set_result(bound)
        forever: asyncio.Future[Any] = loop.create_future()
        await forever
    finally:
        stub.close()
