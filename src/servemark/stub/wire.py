"""What both stub engines put on the wire, and what they count: pure builders and the stats.

Shared so the asyncio engine (faults) and the paced engine (exact timing at scale) send the same
bytes for the same request and report the same ``/stub/stats`` keys.
"""

from __future__ import annotations

import time
from array import array
from dataclasses import dataclass, field
from typing import Any

import orjson

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

    @property
    def paced(self) -> bool:
        return self.ttft_s > 0 or self.itl_s > 0


def chunk(payload: bytes) -> bytes:
    """One HTTP/1.1 chunk."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def event(obj: object) -> bytes:
    """One SSE event in its own chunk."""
    return chunk(b"data: " + orjson.dumps(obj) + b"\n\n")


END = b"0\r\n\r\n"
HEAD_SSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
DONE = chunk(b"data: [DONE]\n\n")
_REASONS = {200: b"OK", 404: b"Not Found", 429: b"Too Many Requests", 500: b"Internal Server Error",
            400: b"Bad Request", 503: b"Service Unavailable"}


def response(status: int, body: bytes, ctype: bytes = b"application/json") -> bytes:
    """A whole Content-Length response (Retry-After on 429/503)."""
    extra = b"Retry-After: 1\r\n" if status in (429, 503) else b""
    return (b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n"
            % (status, _REASONS.get(status, b"Error"), ctype, len(body), extra)) + body


NOT_FOUND = response(404, b'{"error":{"message":"not found"}}')
GENERATE_PATHS = (b"/v1/completions", b"/v1/chat/completions")


@dataclass
class Stats:
    """Counts and pacing error; times are ``time.perf_counter`` (CLOCK_MONOTONIC on Linux)."""

    requests: int = 0
    completions: int = 0
    output_tokens: int = 0
    first_request_at: float | None = None
    last_completion_at: float | None = None
    request_times: array = field(default_factory=lambda: array("d"))
    completion_times: array = field(default_factory=lambda: array("d"))
    completion_tokens: array = field(default_factory=lambda: array("l"))
    firsts: int = 0
    nexts: int = 0
    late_first_s: float = 0.0
    late_next_s: float = 0.0
    gaps_s: float = 0.0  # sum of the actual gaps before later chunks (paced engine)
    max_late_first_s: float = 0.0
    max_late_next_s: float = 0.0
    parsed: int = 0  # requests whose kernel arrival time is known (paced engine)
    parse_delay_s: float = 0.0
    max_parse_delay_s: float = 0.0

    def request(self, t: float) -> None:
        self.requests += 1
        if self.first_request_at is None:
            self.first_request_at = t
        self.request_times.append(t)

    def completed(self, tokens: int) -> None:
        self.completions += 1
        self.output_tokens += tokens
        self.last_completion_at = t = time.perf_counter()
        self.completion_times.append(t)
        self.completion_tokens.append(tokens)

    def doc(self) -> dict[str, Any]:
        def mean(total: float, n: int) -> float | None:
            return total / n if n else None

        return {
            "requests": self.requests, "completions": self.completions,
            "output_tokens": self.output_tokens, "first_request_at": self.first_request_at,
            "last_completion_at": self.last_completion_at,
            "paced_first_chunks": self.firsts, "paced_next_chunks": self.nexts,
            "mean_first_chunk_late_s": mean(self.late_first_s, self.firsts),
            "mean_next_chunk_late_s": mean(self.late_next_s, self.nexts),
            "max_first_chunk_late_s": self.max_late_first_s if self.firsts else None,
            "max_next_chunk_late_s": self.max_late_next_s if self.nexts else None,
            "mean_next_chunk_gap_s": mean(self.gaps_s, self.nexts) if self.gaps_s else None,
            "mean_parse_delay_s": mean(self.parse_delay_s, self.parsed),
            "max_parse_delay_s": self.max_parse_delay_s if self.parsed else None}


def info_response(cfg: StubConfig, stats: Stats, method: bytes, path: bytes,
                  body: bytes) -> bytes | None:
    """The answer to every route but generation (404 for unknown ones); None for generation."""
    if method == b"GET":
        if path == b"/v1/models":
            return response(200, orjson.dumps({"object": "list", "data": [
                {"id": cfg.model, "object": "model", "max_model_len": cfg.max_model_len}]}))
        if path in (b"/health", b"/ping"):
            return response(200, b"")
        if path == b"/stub/stats":
            return response(200, orjson.dumps(stats.doc()))
        if path == b"/stub/times":
            return response(200, orjson.dumps({"requests": stats.request_times.tolist(),
                                               "completions": stats.completion_times.tolist(),
                                               "tokens": stats.completion_tokens.tolist()}))
        if path == b"/version":
            return response(200, b'{"version":"stub"}')
    elif method == b"POST":
        if path in GENERATE_PATHS:
            return None
        if path == b"/tokenize":
            req = orjson.loads(body)
            if "messages" in req:
                text = "".join(m.get("content", "") for m in req["messages"])
            else:
                text = req.get("prompt", "")
            toks = list(text.encode())
            return response(200, orjson.dumps(
                {"count": len(toks), "tokens": toks, "max_model_len": cfg.max_model_len}))
        if path == b"/detokenize":
            req = orjson.loads(body)
            text = bytes(t % 256 for t in req.get("tokens", [])).decode("utf-8", "replace")
            return response(200, orjson.dumps({"prompt": text}))
    return NOT_FOUND


def parse_generation(cfg: StubConfig, body: bytes) -> tuple[dict[str, Any] | None, bytes | None]:
    """The request, or the error response to send instead (400 not JSON, 404 wrong model)."""
    try:
        req = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, response(400, b'{"error":{"message":"body is not JSON"}}')
    if not isinstance(req, dict):
        return None, response(400, b'{"error":{"message":"body is not a JSON object"}}')
    if req.get("model") != cfg.model:
        msg = orjson.dumps({"error": {"message": f"The model `{req.get('model')}` does not exist."}})
        return None, response(404, msg)
    return req, None


class Plan:
    """One generation's response, chunk by chunk: ``payload(i)`` for i < ``chunks``, then
    ``tail`` (usage event when asked for, like vLLM), DONE and END; or ``whole()`` unstreamed."""

    __slots__ = ("_middle", "chat", "chunks", "k", "model", "n", "obj", "prompt_len", "stream",
                 "usage", "with_usage")

    def __init__(self, cfg: StubConfig, chat: bool, req: dict[str, Any]) -> None:
        self.chat = chat
        self.model = cfg.model
        self.n = n = int(req.get("max_tokens") or 16)
        if chat:
            self.prompt_len = sum(len(m.get("content", "").encode()) for m in req.get("messages", []))
        else:
            self.prompt_len = len(str(req.get("prompt", "")).encode())
        self.usage = {"prompt_tokens": self.prompt_len, "completion_tokens": n,
                      "total_tokens": self.prompt_len + n}
        self.stream = bool(req.get("stream"))
        self.k = k = max(cfg.tokens_per_chunk, 1)
        self.chunks = (n + k - 1) // k
        options = req.get("stream_options")  # some clients index choices[0] blindly
        self.with_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        self.obj = "chat.completion.chunk" if chat else "text_completion"
        self._middle: bytes | None = None

    @property
    def middle(self) -> bytes:
        """Every chunk but the last is the same bytes (built on first use)."""
        if self._middle is None:
            self._middle = self._build(0) if self.chunks > 1 else b""
        return self._middle

    def _build(self, i: int) -> bytes:
        text = "tok " * min(self.k, self.n - i * self.k)
        finish = "length" if i == self.chunks - 1 else None
        choice = ({"index": 0, "delta": {"content": text}, "finish_reason": finish} if self.chat
                  else {"index": 0, "text": text, "finish_reason": finish})
        return event({"object": self.obj, "model": self.model, "choices": [choice]})

    def payload(self, i: int) -> bytes:
        return self.middle if i < self.chunks - 1 else self._build(i)

    def tail(self) -> bytes:
        """The usage event (when asked for) that follows the last content chunk."""
        if not self.with_usage:
            return b""
        return event({"object": self.obj, "model": self.model, "choices": [], "usage": self.usage})

    def key(self) -> tuple[bool, int, int, bool]:
        """What an unpaced streamed response's bytes depend on (for caching it whole)."""
        return (self.chat, self.n, self.prompt_len, self.with_usage)

    def unpaced_body(self) -> bytes:
        """Every chunk of the streamed response after the head, at once."""
        return b"".join(self.payload(i) for i in range(self.chunks)) + self.tail() + DONE + END

    def whole(self) -> bytes:
        """The non-streaming response."""
        text = "tok " * self.n
        choice = ({"index": 0, "message": {"role": "assistant", "content": text},
                   "finish_reason": "length"} if self.chat else
                  {"index": 0, "text": text, "finish_reason": "length"})
        return response(200, orjson.dumps(
            {"object": "chat.completion" if self.chat else "text_completion", "model": self.model,
             "choices": [choice], "usage": self.usage}))


class BodyCache:
    """Whole unpaced streamed bodies by shape (at most 256), so a zero-delay stub answers with
    one cached write and is never the bottleneck of a client-capacity measurement."""

    LIMIT = 256

    def __init__(self) -> None:
        self._bodies: dict[tuple[bool, int, int, bool], bytes] = {}

    def body(self, plan: Plan) -> bytes:
        key = plan.key()
        wire = self._bodies.get(key)
        if wire is None:
            wire = plan.unpaced_body()
            if len(self._bodies) < self.LIMIT:
                self._bodies[key] = wire
        return wire
