"""A busy client still measures the server: kernel receive timestamps keep the client's own
delays out of TTFT and ITL (against the paced stub in its own process)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import urllib.request

import pytest

from servemark.client.fasthttp import FastTransport
from servemark.client.openai import GenerationOptions, RequestSpec
from servemark.client.request import Target, execute
from servemark.load import eventloop
from servemark.metrics import derive

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="kernel timestamps are Linux's")


def ttft_with_blocked_loop(base_url: str, output_len: int = 1) -> float:
    """TTFT of one request while the event loop is blocked for 300 ms from 20 ms after the send:
    the server's response (first chunk at 50 ms) waits in the socket meanwhile. (Chunks that
    queue up together share the kernel's arrival time of the latest, so one chunk is sent.)"""

    async def go() -> float:
        t = FastTransport()
        try:
            loop = asyncio.get_running_loop()
            loop.call_later(0.02, time.sleep, 0.3)
            rec = await execute(t, Target(base_url), RequestSpec(0, "completions", prompt="x" * 8,
                                                                 output_len=output_len),
                                GenerationOptions(model="stub"), t0=time.perf_counter())
        finally:
            await t.close()
        assert rec.ok, rec.error
        ttft = derive.ttft_s(rec)
        assert ttft is not None
        return ttft

    return eventloop.run(go())


def test_blocked_client_loop_does_not_inflate_ttft(stub_server, monkeypatch) -> None:
    stub = stub_server("--ttft", "0.05", "--itl", "0.01")
    ttft = ttft_with_blocked_loop(stub.base_url)
    assert 0.049 <= ttft < 0.15  # the kernel saw the chunk at ~50 ms; the loop woke at ~320 ms
    # the same with timestamps off: the client's own 300 ms stall lands in TTFT (the test can fail)
    monkeypatch.setenv("SERVEMARK_KERNEL_TIMESTAMPS", "0")
    ttft_off = ttft_with_blocked_loop(stub.base_url)
    assert ttft_off >= 0.3


def test_stub_reports_its_own_pacing_and_counts(stub_server) -> None:
    stub = stub_server("--ttft", "0.02", "--itl", "0.005")
    ttft_with_blocked_loop(stub.base_url, output_len=8)
    with urllib.request.urlopen(stub.base_url + "/stub/stats", timeout=5) as resp:
        stats = json.loads(resp.read())
    assert stats["completions"] == 1 and stats["output_tokens"] == 8
    assert stats["paced_first_chunks"] == 1 and stats["paced_next_chunks"] == 7
    assert 0 <= stats["mean_first_chunk_late_s"] < 0.1  # never early
    assert stats["last_completion_at"] > stats["first_request_at"]


def paced_record(base_url: str, chunks: int) -> tuple[object, int, int]:
    """One paced request's record (after a warm-up request, not counted), how many of its reads
    the Python one-event framing saw, and how many of its reads were buffered before the body
    was pushed (those are replayed through Python by design: the head came with the first
    chunk, and a task that wakes late finds more)."""
    from servemark.client import fasthttp
    from servemark.client.sse import SSEParser

    calls, replayed = [0], [0]
    plain, take = SSEParser.feed_one, fasthttp._take_reads

    def counted(self: SSEParser, chunk: bytes) -> bytes | None:
        calls[0] += 1
        return plain(self, chunk)

    def counted_take(buf: bytearray, reads: list) -> list:
        out = take(buf, reads)
        replayed[0] += len(out)
        return out

    async def go() -> object:
        t = FastTransport()
        try:
            spec = RequestSpec(0, "completions", prompt="x" * 8, output_len=chunks)
            await execute(t, Target(base_url), spec, GenerationOptions(model="stub"),
                          t0=time.perf_counter())  # stamps are on from the second response
            calls[0] = replayed[0] = 0
            return await execute(t, Target(base_url), spec, GenerationOptions(model="stub"),
                                 t0=time.perf_counter())
        finally:
            await t.close()

    SSEParser.feed_one = counted  # type: ignore[method-assign]
    fasthttp._take_reads = counted_take
    try:
        rec = eventloop.run(go())
    finally:
        SSEParser.feed_one = plain  # type: ignore[method-assign]
        fasthttp._take_reads = take
    return rec, calls[0], replayed[0]


def test_c_reader_gives_the_python_readers_record(stub_server, monkeypatch) -> None:
    """Paced chunks (each its own read) through the C reader's one-event path, through the pump
    thread and through the Python reader: the same tokens, text and usage, and TTFT/ITL of the
    same truth; the C reader bypasses the Python per-read framing for nearly every chunk."""
    stub = stub_server("--ttft", "0.02", "--itl", "0.004")
    chunks = 40
    monkeypatch.setenv("SERVEMARK_PUMP", "0")  # bodies read on the event loop
    fast, fast_calls, fast_replayed = paced_record(stub.base_url, chunks)
    monkeypatch.setenv("SERVEMARK_PUMP", "1")  # ... and by the pump thread
    pumped, _, _ = paced_record(stub.base_url, chunks)
    monkeypatch.setenv("SERVEMARK_FAST_READS", "0")
    monkeypatch.setenv("SERVEMARK_PUMP", "0")
    slow, slow_calls, _ = paced_record(stub.base_url, chunks)
    for rec in (fast, pumped, slow):
        assert rec.ok, rec.error
        assert len(rec.chunk_times_s) == chunks and rec.output_tokens == chunks
        assert rec.finish_reason == "length" and rec.token_source == "usage"
        assert 0.019 <= derive.ttft_s(rec) < 0.1
        times = rec.chunk_times_s
        assert 0.0035 < (times[-1] - times[0]) / (len(times) - 1) < 0.0045  # mean ITL
    assert (fast.output_chars, fast.input_tokens) == (slow.output_chars, slow.input_tokens)
    assert (pumped.output_chars, pumped.input_tokens) == (slow.output_chars, slow.input_tokens)
    assert slow_calls >= chunks - 2  # the Python path frames every paced read itself
    # the C path: only the reads buffered before the push (the first, with the head) and the end
    assert fast_calls <= fast_replayed + 1, (fast_calls, fast_replayed)
    assert fast_replayed < chunks // 2, fast_replayed  # most reads came while armed
