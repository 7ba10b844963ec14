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
from array import array
from dataclasses import dataclass

import orjson

FAULTS = ("http500", "http429", "malformed", "drop", "no_done", "stall",
          "http503", "reset", "bad_utf8", "giant", "hang")
GIANT_CHARS = 4 << 20
MODEL = "stub"


@dataclass
class StubConfig:
    ttft_s: float = 0.0
    itl_s: float = 0.0
    tokens_per_chunk: int = 1
    fault: str | None = None
    fault_every: int = 1  # with ``fault``: every k-th request is faulty (1 = all)
    model: str = MODEL
    max_model_len: int = 1_000_000


def _chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _event(obj: object) -> bytes:
    return _chunk(b"data: " + orjson.dumps(obj) + b"\n\n")


_END = b"0\r\n\r\n"
_HEAD_SSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
_DONE = _chunk(b"data: [DONE]\n\n")


class _Stub:
    def __init__(self, cfg: StubConfig) -> None:
        self.cfg = cfg
        self.requests = 0
        self.completions = 0
        self._cache: dict[tuple[bool, int, int, bool], bytes] = {}  # whole unpaced responses
        # how late paced chunks were written (the truth a client's timing is judged against)
        self.first_request_at: float | None = None  # perf_counter (same clock as CLOCK_MONOTONIC)
        self.last_completion_at: float | None = None
        self.output_tokens = 0
        self.request_times = array("d")  # perf_counter of every generation request, in order
        self.completion_times = array("d")  # ... and of every completion
        self.completion_tokens = array("l")
        self.late_first_s = 0.0
        self.late_next_s = 0.0
        self.firsts = 0
        self.nexts = 0

    def _completed(self, tokens: int) -> None:
        self.completions += 1
        self.output_tokens += tokens
        self.last_completion_at = time.perf_counter()
        self.completion_times.append(self.last_completion_at)
        self.completion_tokens.append(tokens)

    def _response(self, status: int, body: bytes, ctype: bytes = b"application/json") -> bytes:
        reason = {200: b"OK", 404: b"Not Found", 429: b"Too Many Requests",
                  500: b"Internal Server Error", 400: b"Bad Request",
                  503: b"Service Unavailable"}.get(status, b"Error")
        extra = b"Retry-After: 1\r\n" if status in (429, 503) else b""
        return (b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n"
                % (status, reason, ctype, len(body), extra)) + body

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
        cfg = self.cfg
        if method == b"GET" and path == b"/v1/models":
            doc = {"object": "list", "data": [{"id": cfg.model, "object": "model",
                                               "max_model_len": cfg.max_model_len}]}
            writer.write(self._response(200, orjson.dumps(doc)))
        elif method == b"GET" and path in (b"/health", b"/ping"):
            writer.write(self._response(200, b""))
        elif method == b"GET" and path == b"/stub/stats":
            writer.write(self._response(200, orjson.dumps({
                "requests": self.requests, "completions": self.completions,
                "output_tokens": self.output_tokens, "first_request_at": self.first_request_at,
                "last_completion_at": self.last_completion_at,
                "paced_first_chunks": self.firsts, "paced_next_chunks": self.nexts,
                "mean_first_chunk_late_s": self.late_first_s / self.firsts if self.firsts else None,
                "mean_next_chunk_late_s": self.late_next_s / self.nexts if self.nexts else None})))
        elif method == b"GET" and path == b"/stub/times":
            writer.write(self._response(200, orjson.dumps(
                {"requests": self.request_times.tolist(),
                 "completions": self.completion_times.tolist(),
                 "tokens": self.completion_tokens.tolist()})))
        elif method == b"GET" and path == b"/version":
            writer.write(self._response(200, b'{"version":"stub"}'))
        elif method == b"POST" and path == b"/tokenize":
            req = orjson.loads(body)
            if "messages" in req:
                text = "".join(m.get("content", "") for m in req["messages"])
            else:
                text = req.get("prompt", "")
            toks = list(text.encode())
            writer.write(self._response(200, orjson.dumps(
                {"count": len(toks), "tokens": toks, "max_model_len": cfg.max_model_len})))
        elif method == b"POST" and path == b"/detokenize":
            req = orjson.loads(body)
            text = bytes(t % 256 for t in req.get("tokens", [])).decode("utf-8", "replace")
            writer.write(self._response(200, orjson.dumps({"prompt": text})))
        elif method == b"POST" and path in (b"/v1/completions", b"/v1/chat/completions"):
            return await self.generate(path == b"/v1/chat/completions", body, writer)
        else:
            writer.write(self._response(404, b'{"error":{"message":"not found"}}'))
        await writer.drain()
        return True

    def _fault(self, req: dict) -> str | None:
        if req.get("stub_fault"):
            return str(req["stub_fault"])
        if self.cfg.fault and self.requests % max(self.cfg.fault_every, 1) == 0:
            return self.cfg.fault
        return None

    async def generate(self, chat: bool, body: bytes, writer: asyncio.StreamWriter) -> bool:
        t_start = time.perf_counter()
        self.requests += 1
        if self.first_request_at is None:
            self.first_request_at = t_start
        self.request_times.append(t_start)
        cfg = self.cfg
        try:
            req = orjson.loads(body)
        except orjson.JSONDecodeError:
            writer.write(self._response(400, b'{"error":{"message":"body is not JSON"}}'))
            await writer.drain()
            return True
        if req.get("model") != cfg.model:
            msg = orjson.dumps({"error": {"message": f"The model `{req.get('model')}` does not exist."}})
            writer.write(self._response(404, msg))
            await writer.drain()
            return True
        fault = self._fault(req)
        if fault == "http500":
            writer.write(self._response(500, b'{"error":{"message":"injected failure"}}'))
            await writer.drain()
            return True
        if fault == "http503":
            writer.write(self._response(503, b'{"error":{"message":"overloaded"}}'))
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
            writer.write(self._response(429, b'{"error":{"message":"slow down"}}'))
            await writer.drain()
            return True
        n = int(req.get("max_tokens") or 16)
        if chat:
            prompt_len = sum(len(m.get("content", "").encode()) for m in req.get("messages", []))
        else:
            prompt_len = len(str(req.get("prompt", "")).encode())
        usage = {"prompt_tokens": prompt_len, "completion_tokens": n, "total_tokens": prompt_len + n}
        if not req.get("stream"):
            if cfg.ttft_s or cfg.itl_s:
                await asyncio.sleep(cfg.ttft_s + cfg.itl_s * max(n - 1, 0))
            text = "tok " * n
            choice = ({"index": 0, "message": {"role": "assistant", "content": text},
                       "finish_reason": "length"} if chat else
                      {"index": 0, "text": text, "finish_reason": "length"})
            writer.write(self._response(200, orjson.dumps(
                {"object": "chat.completion" if chat else "text_completion", "model": cfg.model,
                 "choices": [choice], "usage": usage})))
            await writer.drain()
            self._completed(n)
            return True
        k = max(cfg.tokens_per_chunk, 1)
        chunks = (n + k - 1) // k
        # like vLLM: the usage chunk only when asked for (some clients index choices[0] blindly)
        options = req.get("stream_options")
        with_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        obj = "chat.completion.chunk" if chat else "text_completion"

        def build(i: int) -> bytes:
            count = min(k, n - i * k)
            text = "tok " * count
            finish = "length" if i == chunks - 1 else None
            choice = ({"index": 0, "delta": {"content": text}, "finish_reason": finish} if chat
                      else {"index": 0, "text": text, "finish_reason": finish})
            return _event({"object": obj, "model": cfg.model, "choices": [choice]})

        middle = build(0) if chunks > 1 else b""  # every chunk but the last is the same bytes

        def payload(i: int) -> bytes:
            return middle if i < chunks - 1 else build(i)

        paced = cfg.ttft_s > 0 or cfg.itl_s > 0
        if not paced and fault is None:
            # zero-delay load: the whole response is one cached write, so the stub is never the
            # bottleneck of a client-capacity measurement
            key = (chat, n, prompt_len, with_usage)
            wire = self._cache.get(key)
            if wire is None:
                tail = (_event({"object": obj, "model": cfg.model, "choices": [], "usage": usage})
                        if with_usage else b"")
                wire = b"".join(payload(i) for i in range(chunks)) + tail + _DONE + _END
                if len(self._cache) < 256:
                    self._cache[key] = wire
            writer.write(_HEAD_SSE + wire)
            await writer.drain()
            self._completed(n)
            return True
        writer.write(_HEAD_SSE)
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
                writer.write(_chunk(head))
                await writer.drain()
                writer.write(_chunk(tail))
                continue
            if fault == "giant" and i == 1:
                writer.write(_event({"object": obj, "model": cfg.model,
                                     "choices": [{"index": 0, "text": "x" * GIANT_CHARS,
                                                  "delta": {"content": "x" * GIANT_CHARS},
                                                  "finish_reason": None}]}))
                continue
            if fault == "malformed" and i == 1:
                writer.write(_chunk(b"data: {this is not json\n\n"))
                continue
            if fault == "drop" and i == min(2, chunks - 1):
                await writer.drain()
                writer.transport.abort()
                return False
            if fault == "stall" and i == min(2, chunks - 1):
                await writer.drain()
                await asyncio.sleep(3600)
            writer.write(payload(i))
            if paced:
                late = time.perf_counter() - t_start - cfg.ttft_s - i * cfg.itl_s
                if i:
                    self.late_next_s += late
                    self.nexts += 1
                else:
                    self.late_first_s += late
                    self.firsts += 1
                if writer.transport.get_write_buffer_size():
                    await writer.drain()
        if with_usage:
            writer.write(_event({"object": obj, "model": cfg.model, "choices": [], "usage": usage}))
        if fault != "no_done":
            writer.write(_DONE)
        writer.write(_END)
        await writer.drain()
        self._completed(n)
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
    parser.add_argument("--ttft", type=float, default=0.0, help="seconds to the first chunk")
    parser.add_argument("--itl", type=float, default=0.0, help="seconds between chunks")
    parser.add_argument("--tokens-per-chunk", type=int, default=1)
    parser.add_argument("--fault", choices=FAULTS)
    parser.add_argument("--fault-every", type=int, default=1)
    parser.add_argument("--model", default=MODEL)
    args = parser.parse_args(argv)
    cfg = StubConfig(args.ttft, args.itl, args.tokens_per_chunk, args.fault, args.fault_every,
                     args.model)
    try:
        import uvloop  # optional: faster loop when installed

        uvloop.install()
    except ImportError:
        pass

    async def run() -> None:
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(serve(cfg, args.host, args.port, ready))
        port = await ready
        print(f"stub listening on http://{args.host}:{port}", flush=True)
        await task

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


if __name__ == "__main__":
    main()
