"""One request through the fake transport: timing, token counts, classified failures."""

from __future__ import annotations

import aiohttp
import orjson
import pytest

from servemark.client.openai import GenerationOptions, RequestSpec, build_body
from servemark.client.request import Target, execute
from servemark.client.transport import FakeReply, FakeTransport

TARGET = Target("http://x")
OPTS = GenerationOptions(model="m")
SPEC = RequestSpec(1, "completions", prompt="hi", input_len=5, output_len=3)


def ev(obj: object) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def text(t: str, finish: str | None = None) -> bytes:
    return ev({"choices": [{"index": 0, "text": t, "finish_reason": finish}]})


USAGE = ev({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3}})
DONE = b"data: [DONE]\n\n"


class Clock:
    """A fake monotonic clock advanced by the fake transport's pieces."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        self.t += 0.001
        return self.t


async def run(reply: FakeReply, opts: GenerationOptions = OPTS, spec: RequestSpec = SPEC):
    return await execute(FakeTransport([reply]), TARGET, spec, opts, t0=0.0, load_point="p")


async def test_streamed_request_records_chunks_and_usage() -> None:
    reply = FakeReply(200, [(0.02, text("a")), (0.01, text("b")), (0.01, text("c", "length") + USAGE + DONE)])
    r = await run(reply)
    assert r.ok and r.error_kind is None
    assert len(r.chunk_times_s) == 3
    assert r.chunk_times_s[0] >= 0.02
    assert r.chunk_times_s == sorted(r.chunk_times_s)
    assert r.end_s - r.start_s >= r.chunk_times_s[-1]
    assert (r.input_tokens, r.output_tokens, r.token_source) == (5, 3, "usage")
    assert r.finish_reason == "length" and r.output_chars == 3


async def test_events_split_across_reads_anywhere() -> None:
    whole = text("a") + text("b") + USAGE + DONE
    pieces = [(0.0, whole[i:i + 7]) for i in range(0, len(whole), 7)]
    r = await run(FakeReply(200, pieces))
    assert r.ok and len(r.chunk_times_s) == 2 and r.output_tokens == 3


async def test_without_usage_counts_with_tokenizer_or_chunks() -> None:
    reply = FakeReply(200, [(0, text("ab") + text("cd") + DONE)])
    r = await execute(FakeTransport([reply]), TARGET, SPEC, OPTS, t0=0, count_tokens=lambda s: len(s))
    assert (r.output_tokens, r.token_source, r.input_tokens) == (4, "tokenizer", 5)
    r2 = await run(reply)
    assert (r2.output_tokens, r2.token_source) == (2, "chunks")


async def test_http_error_is_recorded_with_server_message() -> None:
    r = await run(FakeReply(500, [(0, b'{"error": {"message": "boom"}}')]))
    assert not r.ok and r.status == 500 and r.error_kind == "http_status"
    assert "boom" in (r.error or "")


async def test_malformed_chunk() -> None:
    r = await run(FakeReply(200, [(0, text("a") + b"data: {nope\n\n")]))
    assert not r.ok and r.error_kind == "malformed"


async def test_stream_without_done_is_truncated() -> None:
    r = await run(FakeReply(200, [(0, text("a") + USAGE)]))
    assert not r.ok and r.error_kind == "truncated"
    assert r.output_tokens == 3  # what was received is still counted


async def test_dropped_connection_mid_stream() -> None:
    r = await run(FakeReply(200, [(0, text("a"))], raise_after=aiohttp.ServerDisconnectedError()))
    assert not r.ok and r.error_kind == "connection"
    assert len(r.chunk_times_s) == 1


async def test_error_event_inside_stream() -> None:
    r = await run(FakeReply(200, [(0, ev({"error": {"message": "engine died"}}) + DONE)]))
    assert r.error_kind == "server_error" and "engine died" in (r.error or "")


async def test_chat_deltas_and_reasoning_count_as_content() -> None:
    chunks = ev({"choices": [{"delta": {"role": "assistant"}}]}) + ev(
        {"choices": [{"delta": {"reasoning_content": "hm"}}]}) + ev(
        {"choices": [{"delta": {"content": "ok"}, "finish_reason": "stop"}]}) + DONE
    spec = RequestSpec(2, "chat", messages=({"role": "user", "content": "q"},), output_len=2)
    r = await run(FakeReply(200, [(0, chunks)]), spec=spec)
    assert r.ok and len(r.chunk_times_s) == 2 and r.output_chars == 4


async def test_non_streaming() -> None:
    body = orjson.dumps({"choices": [{"text": "abc", "finish_reason": "length"}],
                         "usage": {"prompt_tokens": 5, "completion_tokens": 3}})
    r = await run(FakeReply(200, [(0.01, body)]), opts=GenerationOptions(model="m", stream=False))
    assert r.ok and not r.streamed and r.chunk_times_s == [] and r.output_tokens == 3


def test_request_bodies() -> None:
    body = orjson.loads(build_body(SPEC, OPTS))
    assert body == {"model": "m", "prompt": "hi", "max_tokens": 3, "temperature": 0.0,
                    "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
    chat = RequestSpec(1, "chat", messages=({"role": "user", "content": "q"},), output_len=4)
    body = orjson.loads(build_body(chat, GenerationOptions(model="m", stream=False, ignore_eos=False,
                                                           extra_body={"top_p": 0.5})))
    assert body["messages"] == [{"role": "user", "content": "q"}]
    assert "stream_options" not in body and "ignore_eos" not in body and body["top_p"] == 0.5


@pytest.mark.parametrize("status", [401, 404, 503])
async def test_any_status_is_data_not_exception(status: int) -> None:
    r = await run(FakeReply(status, [(0, b"not json")]))
    assert r.status == status and r.error == f"HTTP {status}: not json"
