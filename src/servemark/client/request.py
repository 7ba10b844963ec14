"""Send one request and turn what comes back into a RequestRecord.

The hot path per network read is: one timestamp, SSE framing, then one bulk decode of all its
events (:mod:`servemark.client.bulk`) or, for unusual shapes, one JSON decode per event. Token
counting beyond ``usage`` and every derived metric happen after the request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from servemark.client.bulk import AVAILABLE as BULK
from servemark.client.bulk import decode_joined
from servemark.client.openai import (
    PATHS,
    GenerationOptions,
    MalformedResponse,
    RequestSpec,
    build_body,
    decode_body,
    decode_event,
    error_from_body,
    parse_event,
)
from servemark.client.sse import JOIN, SSEParser
from servemark.client.transport import HttpRequest, Transport
from servemark.metrics.record import RequestRecord

Clock = Callable[[], float]
TokenCounter = Callable[[str], int]


@dataclass(frozen=True, slots=True)
class Target:
    """Where requests go and how they are authenticated (the key is never recorded)."""

    base_url: str
    headers: tuple[tuple[str, str], ...] = ()

    def url(self, api: str) -> str:
        return self.base_url.rstrip("/") + PATHS[api]


def _classify(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return "timeout", "timed out waiting for the server"
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return "connection", f"connection dropped: {exc}"
    if isinstance(exc, aiohttp.ClientConnectionError | ConnectionError | OSError):
        return "connection", f"connection error: {exc}"
    if isinstance(exc, MalformedResponse):
        return "malformed", str(exc)
    return "client_error", f"{type(exc).__name__}: {exc}"


async def execute(
    transport: Transport,
    target: Target,
    spec: RequestSpec,
    opts: GenerationOptions,
    *,
    t0: float,
    load_point: str = "",
    scheduled_s: float | None = None,
    clock: Clock = time.perf_counter,
    count_tokens: TokenCounter | None = None,
    on_text: Callable[[RequestRecord, str], None] | None = None,
) -> RequestRecord:
    """Run one request to completion; never raises for request-level failures. ``on_text``
    receives the generated text (for output checks); records never keep it."""
    headers = {"Content-Type": "application/json", **dict(target.headers)}
    if opts.stream:
        headers["Accept"] = "text/event-stream"
    request = HttpRequest("POST", target.url(spec.api), build_body(spec, opts), headers)
    rec = RequestRecord(
        request_id=spec.request_id,
        load_point=load_point,
        endpoint=target.base_url,
        api=spec.api,
        start_s=0.0,
        end_s=0.0,
        scheduled_s=scheduled_s,
        requested_input_tokens=spec.input_len,
        requested_output_tokens=spec.output_len,
        streamed=opts.stream,
        conversation_id=spec.conversation_id,
        turn=spec.turn,
    )
    times = rec.chunk_times_s
    texts: list[str] = []
    usage: dict | None = None
    done = False
    finish: str | None = None
    last_read: float | None = None
    start = clock()
    rec.start_s = start - t0
    try:
        async with transport.open(request) as resp:
            rec.status = resp.status
            if resp.status != 200:
                body = await resp.read()
                rec.error_kind = "http_status"
                rec.error = f"HTTP {resp.status}: {error_from_body(body)}"
            elif opts.stream:
                parser = SSEParser()
                # the transport may know when the bytes reached this machine (kernel receive
                # timestamps, same clock as perf_counter): a busy client then does not add its
                # own queueing to TTFT/ITL. Every event of one read shares its arrival time.
                stamped = clock is time.perf_counter and hasattr(resp, "arrival")
                async for chunk in resp.iter_chunks():
                    now = clock()
                    if stamped:
                        arrival = resp.arrival  # type: ignore[attr-defined]
                        if arrival is not None and start <= arrival < now:
                            now = arrival
                    joined = parser.feed_joined(chunk) if BULK else None
                    if joined is not None:
                        bulk = decode_joined(*joined)
                        if bulk is not None:
                            got, fin, use, saw_done = bulk
                            if got:
                                times.extend([now - start] * len(got))
                                texts.extend(got)
                            if fin:
                                finish = fin
                            if use:
                                usage = use
                            done = done or saw_done
                            continue
                        events = joined[0].split(JOIN)
                    else:
                        events = parser.feed(chunk)
                    for data in events:
                        if data == b"[DONE]":
                            done = True
                            continue
                        text, fin, use, error = parse_event(data)
                        if text:
                            times.append(now - start)
                            texts.append(text)
                        if fin:
                            finish = fin
                        if use:
                            usage = use
                        if error:
                            rec.error_kind, rec.error = "server_error", error
                if stamped:  # the read that brought the last byte (maybe only the final chunk)
                    arrival = resp.arrival  # type: ignore[attr-defined]
                    if arrival is not None and start <= arrival < clock():
                        last_read = arrival
                for data in parser.close():
                    if data == b"[DONE]":
                        done = True
                    else:
                        delta = decode_event(data)
                        if delta.usage:
                            usage = delta.usage
                if rec.error_kind is None and not done:
                    rec.error_kind = "truncated"
                    rec.error = "stream ended before [DONE]"
            else:
                delta = decode_body(await resp.read())
                if delta.error:
                    rec.error_kind, rec.error = "server_error", delta.error
                texts.append(delta.text)
                usage, finish = delta.usage, delta.finish_reason
    except asyncio.CancelledError:
        # Our runner cancels in-flight requests only on a second Ctrl-C; it wants the partial
        # record back, so the cancellation ends here (the task completes normally).
        rec.error_kind, rec.error = "cancelled", "cancelled by the user"
    except Exception as exc:  # a failed request is data, not an exception
        rec.error_kind, rec.error = _classify(exc)
    # last byte: the kernel's arrival time of the last read when known (same clock), else now
    rec.end_s = (last_read if last_read is not None else clock()) - t0
    rec.finish_reason = finish
    rec.ok = rec.error_kind is None
    _finish_counts(rec, texts, usage, count_tokens)
    if on_text is not None:
        on_text(rec, "".join(texts))
    return rec


def _finish_counts(
    rec: RequestRecord, texts: list[str], usage: dict | None, count_tokens: TokenCounter | None
) -> None:
    text = "".join(texts)
    rec.output_chars = len(text)
    if usage and usage.get("completion_tokens") is not None:
        rec.output_tokens = int(usage["completion_tokens"])
        if usage.get("prompt_tokens") is not None:
            rec.input_tokens = int(usage["prompt_tokens"])
        rec.token_source = "usage"
        return
    rec.input_tokens = rec.requested_input_tokens
    if count_tokens is not None:
        rec.output_tokens = count_tokens(text) if text else 0
        rec.token_source = "tokenizer"
    elif rec.streamed:
        rec.output_tokens = len(rec.chunk_times_s)
        rec.token_source = "chunks"

