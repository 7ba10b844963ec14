"""The stub server: raw asyncio HTTP/1.1 with keep-alive and chunked SSE streaming.

Timing is exact by construction: the first content chunk is written ``ttft_s`` after the request
was read and each next one ``itl_s`` later (absolute deadlines, so sleeps never accumulate drift).
Its tokenizer is trivial and exact: one token per UTF-8 byte (``/tokenize``, ``/detokenize``).

Faults (server-wide ``fault`` with ``fault_every``, or per request with ``"stub_fault"`` in the
body): ``http500``, ``http429``, ``malformed`` (non-JSON data), ``drop`` (connection cut
mid-stream), ``no_done`` (stream ends without [DONE]), ``stall`` (stops sending after a few chunks).
Chaos kinds: ``http503`` (with Retry-After), ``reset`` (TCP reset before any header), ``bad_utf8``
(an event whose bytes are invalid UTF-8, split across two HTTP chunks), ``giant`` (one 4 MiB
event), ``hang`` (reads the request, never answers).
``--engine fast`` (:mod:`servemark.stub.paced`) paces thousands of streams exactly, without faults.
``GET /stub/stats``: completions, output tokens, first request / last completion times
(``time.perf_counter``, so a benchmark can count throughput at the server) and how late paced
chunks were written on average (the stub's own error); ``GET /stub/times``: the time of every
generation request and completion, and each completion's output tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import struct
import time

from servemark.stub.wire import (
    DONE,
    END,
    HEAD_SSE,
    MODEL,
    BodyCache,
    Plan,
    Stats,
    StubConfig,
    chunk,
    event,
    info_response,
    parse_generation,
    response,
)

FAULTS = ("http500", "http429", "malformed", "drop", "no_done", "stall",
          "http503", "reset", "bad_utf8", "giant", "hang")
GIANT_CHARS = 4 << 20
__all__ = ["FAULTS", "MODEL", "StubConfig", "main", "serve"]


class _Stub:
    def __init__(self, cfg: StubConfig) -> None:
        self.cfg = cfg
        self.stats = Stats()
        self._bodies = BodyCache()  # whole unpaced responses

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                method, path, _ = lines[0].split(b" ", 2)
                length = 0
                for line in lines[1:]:
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = await reader.readexactly(length) if length else b""
                keep = await self.route(method, path.split(b"?")[0], body, writer)
                if not keep:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def route(self, method: bytes, path: bytes, body: bytes,
                    writer: asyncio.StreamWriter) -> bool:
        answer = info_response(self.cfg, self.stats, method, path, body)
        if answer is None:
            return await self.generate(path == b"/v1/chat/completions", body, writer)
        writer.write(answer)
        await writer.drain()
        return True

    def _fault(self, req: dict) -> str | None:
        if req.get("stub_fault"):
            return str(req["stub_fault"])
        if self.cfg.fault and self.stats.requests % max(self.cfg.fault_every, 1) == 0:
            return self.cfg.fault
        return None

    def _late(self, i: int, late: float) -> None:
        st = self.stats
        if i:
            st.late_next_s += late
            st.nexts += 1
            st.max_late_next_s = max(st.max_late_next_s, late)
        else:
            st.late_first_s += late
            st.firsts += 1
            st.max_late_first_s = max(st.max_late_first_s, late)

    async def generate(self, chat: bool, body: bytes, writer: asyncio.StreamWriter) -> bool:
        t_start = time.perf_counter()
        self.stats.request(t_start)
        cfg = self.cfg
        req, error = parse_generation(cfg, body)
        if req is None:
            writer.write(error or b"")
            await writer.drain()
            return True
        fault = self._fault(req)
        if fault == "http500":
            writer.write(response(500, b'{"error":{"message":"injected failure"}}'))
            await writer.drain()
            return True
        if fault == "http503":
            writer.write(response(503, b'{"error":{"message":"overloaded"}}'))
            await writer.drain()
            return True
        if fault == "reset":  # SO_LINGER 0 turns the close into a TCP RST
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        if fault == "hang":
            await asyncio.sleep(3600)
            return False
        if fault == "http429":
            writer.write(response(429, b'{"error":{"message":"slow down"}}'))
            await writer.drain()
            return True
        plan = Plan(cfg, chat, req)
        n, chunks, obj = plan.n, plan.chunks, plan.obj
        if not plan.stream:
            if cfg.paced:
                await asyncio.sleep(cfg.ttft_s + cfg.itl_s * max(n - 1, 0))
            writer.write(plan.whole())
            await writer.drain()
            self.stats.completed(n)
            return True
        paced = cfg.paced
        if not paced and fault is None:
            # zero-delay load: the whole response is one cached write, so the stub is never the
            # bottleneck of a client-capacity measurement
            writer.write(HEAD_SSE + self._bodies.body(plan))
            await writer.drain()
            self.stats.completed(n)
            return True
        writer.write(HEAD_SSE)
        for i in range(chunks):
            if paced:
                due = t_start + cfg.ttft_s + i * cfg.itl_s
                delay = due - time.perf_counter()
                if delay > 0:
                    if writer.transport.get_write_buffer_size():
                        await writer.drain()
                    # a loop's timer may fire up to a tick early (uvloop: 1 ms); never send early
                    while delay > 0:
                        await asyncio.sleep(delay)
                        delay = due - time.perf_counter()
            if writer.transport.is_closing():  # the client went away (drain is skipped)
                return False
            if fault == "bad_utf8" and i == 1:
                head, tail = b'data: {"choices":[{"index":0,"text":"\xc3', b'\x28 x"}]}\n\n'
                writer.write(chunk(head))
                await writer.drain()
                writer.write(chunk(tail))
                continue
            if fault == "giant" and i == 1:
                writer.write(event({"object": obj, "model": cfg.model,
                                    "choices": [{"index": 0, "text": "x" * GIANT_CHARS,
                                                 "delta": {"content": "x" * GIANT_CHARS},
                                                 "finish_reason": None}]}))
                continue
            if fault == "malformed" and i == 1:
                writer.write(chunk(b"data: {this is not json\n\n"))
                continue
            if fault == "drop" and i == min(2, chunks - 1):
                await writer.drain()
                writer.transport.abort()
                return False
            if fault == "stall" and i == min(2, chunks - 1):
                await writer.drain()
                await asyncio.sleep(3600)
            writer.write(plan.payload(i))
            if paced:
                self._late(i, time.perf_counter() - t_start - cfg.ttft_s - i * cfg.itl_s)
                if writer.transport.get_write_buffer_size():
                    await writer.drain()
        writer.write(plan.tail())
        if fault != "no_done":
            writer.write(DONE)
        writer.write(END)
        await writer.drain()
        self.stats.completed(n)
        return True


async def serve(cfg: StubConfig, host: str = "127.0.0.1", port: int = 0,
                ready: asyncio.Future[int] | None = None) -> None:
    """Serve forever (cancel to stop); ``ready`` receives the bound port."""
    stub = _Stub(cfg)
    server = await asyncio.start_server(stub.handle, host, port, backlog=4096, limit=1 << 20)
    bound = server.sockets[0].getsockname()[1]
    if ready is not None:
        ready.set_result(bound)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m servemark.stub", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--engine", choices=("asyncio", "fast"), default="asyncio",
                        help="asyncio: every fault; fast: exact pacing for thousands of streams")
    parser.add_argument("--ttft", type=float, default=0.0, help="seconds to the first chunk")
    parser.add_argument("--itl", type=float, default=0.0, help="seconds between chunks")
    parser.add_argument("--tokens-per-chunk", type=int, default=1)
    parser.add_argument("--fault", choices=FAULTS)
    parser.add_argument("--fault-every", type=int, default=1)
    parser.add_argument("--model", default=MODEL)
    args = parser.parse_args(argv)
    if args.engine == "fast" and args.fault:
        parser.error("--fault needs the asyncio engine: drop --engine fast")
    cfg = StubConfig(args.ttft, args.itl, args.tokens_per_chunk, args.fault, args.fault_every,
                     args.model)
    try:
        import uvloop  # optional: faster loop when installed

        uvloop.install()
    except ImportError:
        pass
    if args.engine == "fast":
        from servemark.stub import paced

        engine = paced.serve
    else:
        engine = serve

    async def run() -> None:
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(engine(cfg, args.host, args.port, ready))
        port = await ready
        print(f"stub listening on http://{args.host}:{port} ({args.engine} engine)", flush=True)
        await task

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


if __name__ == "__main__":
    main()
