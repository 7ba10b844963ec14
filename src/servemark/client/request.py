"""Send one request and turn what comes back into a RequestRecord.

The hot path per network read is: one timestamp, SSE framing, then one bulk decode of all its
events (:mod:`servemark.client.bulk`) or, for unusual shapes, one JSON decode per event. Token
counting beyond ``usage`` and every derived metric happen after the request. Retries (429/503,
connections refused before any byte) stay inside one record.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

import aiohttp

from servemark.client.bulk import AVAILABLE as BULK
from servemark.client.bulk import decode_joined, decode_one
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
from servemark.client.ports import is_ports_exhausted, ports_exhausted_line
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


_NO_LIMIT = contextlib.nullcontext()
RETRY_STATUSES = (429, 503)  # the server asks us to come back later; nothing was processed


def retry_delay(headers: Mapping[str, str], attempt: int, max_wait_s: float) -> float:
    """Seconds before the next attempt: the server's ``Retry-After`` (seconds or an HTTP date)
    when it sent one, else exponential backoff from 0.5 s; never more than ``max_wait_s``."""
    value = headers.get("retry-after") or headers.get("Retry-After")
    wait = 0.5 * 2 ** (attempt - 1)
    if value:
        try:
            wait = float(value)
        except ValueError:
            with contextlib.suppress(TypeError, ValueError, IndexError):
                when = parsedate_to_datetime(value)
                wait = when.timestamp() - time.time()
    return min(max(wait, 0.0), max_wait_s)


def _classify(exc: BaseException) -> tuple[str, str]:
    if is_ports_exhausted(exc) or is_ports_exhausted(exc.__cause__ or exc):
        return "local_ports", ports_exhausted_line()
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return "timeout", "timed out waiting for the server"
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return "connection", f"connection dropped: {exc}"
    if isinstance(exc, aiohttp.ClientConnectionError | ConnectionError | OSError):
        return "connection", f"connection error: {exc}"
    if isinstance(exc, MalformedResponse):
        return "malformed", str(exc)
    return "client_error", f"{type(exc).__name__}: {exc}"


@dataclass(slots=True)
class _Stream:
    """What one streamed response carried, filled in while it is read."""

    texts: list[str] = field(default_factory=list)
    usage: dict | None = None
    finish: str | None = None
    done: bool = False
    error: str | None = None
    last_read: float | None = None  # kernel arrival time of the read with the last byte


Feed = Callable[[bytes, float | None], None]


def _stream_feeder(times: list[float], out: _Stream, start: float, clock: Clock,
                   on_first: Callable[[], None],
                   stamped: bool) -> tuple[Feed, Feed, SSEParser]:
    """The per-read work of a streamed response as closures (the hot path): ``feed`` takes a
    read's de-chunked bytes — SSE framing, one bulk decode of its events (or one decode per
    event for unusual shapes), one time per content chunk; ``feed_event`` takes the data of one
    single-line ``data:`` event that was a whole chunk of its read (the C reader found it) with
    the same result. ``arrival``: the kernel's receive time of the read (perf_counter clock) when the
    transport knows it — a busy client then does not add its own queueing to TTFT/ITL."""
    parser = SSEParser()
    texts = out.texts
    feed_joined, feed_one = parser.feed_joined, parser.feed_one

    def feed(chunk: bytes, arrival: float | None) -> None:
        if BULK:  # one event in this read (paced streams): the leanest path
            payload = feed_one(chunk)
            if payload is not None:
                feed_event(payload, arrival)
                return
        general(chunk, arrival)

    def general(chunk: bytes, arrival: float | None) -> None:
        """Any read: bulk decode of whole single-line events, else the per-event rules."""
        now = clock()
        if stamped and arrival is not None and start <= arrival < now:
            now = arrival
        first = not times
        joined = feed_joined(chunk) if BULK else None
        if joined is not None:
            bulk = decode_joined(*joined)
            if bulk is not None:
                got, fin, use, saw_done = bulk
                if got:
                    if len(got) == 1:
                        times.append(now - start)
                        texts.append(got[0])
                    else:
                        times.extend([now - start] * len(got))
                        texts.extend(got)
                if fin:
                    out.finish = fin
                if use:
                    out.usage = use
                if saw_done:
                    out.done = True
                if first and times:
                    on_first()
                return
            events = joined[0].split(JOIN)
        else:
            events = parser.feed(chunk)
        for data in events:
            if data == b"[DONE]":
                out.done = True
                continue
            text, fin, use, error = parse_event(data)
            if text:
                times.append(now - start)
                texts.append(text)
            if fin:
                out.finish = fin
            if use:
                out.usage = use
            if error:
                out.error = error
        if first and times:
            on_first()

    def feed_event(payload: bytes, arrival: float | None) -> None:
        one = decode_one(payload) if parser.idle and payload != b"[DONE]" else None
        if one is None:  # [DONE], an unusual shape, or a read that continues earlier bytes
            general(b"data: " + payload + b"\n\n", arrival)
            return
        now = clock()
        if stamped and arrival is not None and start <= arrival < now:
            now = arrival
        text, fin, use = one
        if text:
            times.append(now - start)
            texts.append(text)
            if len(times) == 1:
                on_first()
        if fin:
            out.finish = fin
        if use:
            out.usage = use

    return feed, feed_event, parser


async def _read_stream(resp: object, times: list[float], out: _Stream, start: float,
                       clock: Clock, on_first: Callable[[], None]) -> None:
    """Read an SSE response into ``times`` (one entry per content chunk) and ``out``: pushed
    read by read from the transport's read callback where it can (no coroutine wake-up per
    read), else by iterating its chunks. Every event of one read shares its arrival time."""
    stamped = clock is time.perf_counter and hasattr(resp, "arrival")
    feed, feed_event, parser = _stream_feeder(times, out, start, clock, on_first, stamped)
    if getattr(resp, "can_push", False):
        await resp.push(feed, feed_event)  # type: ignore[attr-defined]
    else:
        arrival = None
        async for chunk in resp.iter_chunks():  # type: ignore[attr-defined]
            if stamped:
                arrival = resp.arrival  # type: ignore[attr-defined]
            feed(chunk, arrival)
    if stamped:  # the read that brought the last byte (maybe only the final chunk)
        arrival = resp.arrival  # type: ignore[attr-defined]
        if arrival is not None and start <= arrival < clock():
            out.last_read = arrival
    for data in parser.close():
        if data == b"[DONE]":
            out.done = True
        else:
            delta = decode_event(data)
            if delta.usage:
                out.usage = delta.usage


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
    out = _Stream()
    start = clock()
    rec.start_s = start - t0  # every attempt's timing counts from the first send
    rec.attempts = 0
    # no first-token limit: no Timeout object per request (it is on the per-request hot path)
    limit = opts.first_token_timeout_s
    first_token = asyncio.timeout(limit) if limit is not None else None

    def got_first_token() -> None:
        if first_token is not None:
            first_token.reschedule(None)

    try:
        async with first_token or _NO_LIMIT:
            while True:
                rec.attempts += 1
                retry_in: float | None = None
                answered = False
                try:
                    async with transport.open(request) as resp:
                        answered = True
                        rec.status = resp.status
                        if resp.status != 200:
                            body = await resp.read()
                            if resp.status in RETRY_STATUSES and rec.attempts <= opts.retries:
                                retry_in = retry_delay(resp.headers, rec.attempts,
                                                       opts.retry_max_wait_s)
                            else:
                                rec.error_kind = "http_status"
                                rec.error = f"HTTP {resp.status}: {error_from_body(body)}"
                        elif opts.stream:
                            await _read_stream(resp, times, out, start, clock, got_first_token)
                            if out.error:
                                rec.error_kind, rec.error = "server_error", out.error
                            elif not out.done:
                                rec.error_kind = "truncated"
                                rec.error = "stream ended before [DONE]"
                        else:
                            delta = decode_body(await resp.read())
                            got_first_token()
                            if delta.error:
                                rec.error_kind, rec.error = "server_error", delta.error
                            out.texts.append(delta.text)
                            out.usage, out.finish = delta.usage, delta.finish_reason
                except (ConnectionError, aiohttp.ClientConnectionError) as exc:
                    # nothing of this attempt reached us, so sending again cannot double-count
                    if (answered or rec.attempts > opts.retries
                            or isinstance(exc, asyncio.TimeoutError | TimeoutError)):
                        raise
                    retry_in = retry_delay({}, rec.attempts, opts.retry_max_wait_s)
                if retry_in is None:
                    break
                await asyncio.sleep(retry_in)
    except asyncio.CancelledError:
        # Our runner cancels in-flight requests only on a second Ctrl-C; it wants the partial
        # record back, so the cancellation ends here (the task completes normally).
        rec.error_kind, rec.error = "cancelled", "cancelled by the user"
    except Exception as exc:  # a failed request is data, not an exception
        if first_token is not None and first_token.expired():
            rec.error_kind = "timeout"
            rec.error = f"no first token within {opts.first_token_timeout_s:g} s"
        else:
            rec.error_kind, rec.error = _classify(exc)
    # last byte: the kernel's arrival time of the last read, also when that read brought the last
    # content chunk too (the reader thread hands the end over later than it came); now when
    # there is no stamp, when it is older than the last chunk's time (that chunk was not
    # stamped), or when one read brought everything (its stamp cannot tell the first token
    # from the last byte, so the end is when it was handled, as TTFT < E2E needs)
    last = out.last_read
    if last is None or not times or last < start + times[-1] or last <= start + times[0]:
        last = clock()
    rec.end_s = last - t0
    rec.finish_reason = out.finish
    rec.ok = rec.error_kind is None
    _finish_counts(rec, out.texts, out.usage, count_tokens)
    if on_text is not None:
        on_text(rec, "".join(out.texts))
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

