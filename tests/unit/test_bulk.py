"""The bulk decoder of one read's SSE events agrees with the per-event decoder, or declines."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servemark.client.bulk import AVAILABLE, decode_joined, decode_one
from servemark.client.fasthttp import _dechunk_whole
from servemark.client.openai import MalformedResponse, parse_event
from servemark.client.sse import JOIN, SSEParser

pytestmark = pytest.mark.skipif(not AVAILABLE, reason="msgspec not installed")


def wire(*payloads: bytes) -> bytes:
    return b"".join(b"data: " + p + b"\n\n" for p in payloads)


def per_event(payloads: list[bytes]) -> tuple[list[str], str | None, dict | None, bool] | str:
    """What the per-event path makes of the same events (the reference); 'malformed' if it raises."""
    texts: list[str] = []
    finish = usage = None
    done = False
    for data in payloads:
        if data == b"[DONE]":
            done = True
            continue
        try:
            text, fin, use, error = parse_event(data)
        except MalformedResponse:
            return "malformed"
        if error:
            return "error"
        if text:
            texts.append(text)
        finish = fin or finish
        usage = use or usage
    return texts, finish, usage, done


def bulk(payloads: list[bytes]) -> tuple[list[str], str | None, dict | None, bool] | None:
    joined = SSEParser().feed_joined(wire(*payloads))
    assert joined is not None
    assert joined[1] == len(payloads)
    return decode_joined(*joined)


def completion(text: str, finish: str | None = None) -> bytes:
    return orjson.dumps({"object": "text_completion", "model": "m",
                         "choices": [{"index": 0, "text": text, "finish_reason": finish,
                                      "logprobs": None, "stop_reason": None}]})


def test_a_whole_completions_stream_in_one_read() -> None:
    usage = {"prompt_tokens": 128, "completion_tokens": 3, "total_tokens": 131}
    events = [completion("a"), completion("b\n\"c\""), completion("", "length"),
              orjson.dumps({"choices": [], "usage": usage}), b"[DONE]"]
    assert bulk(events) == (["a", 'b\n"c"'], "length", usage, True) == per_event(events)


def test_chat_deltas_with_reasoning_and_role_chunk() -> None:
    events = [orjson.dumps({"choices": [{"delta": {"role": "assistant", "content": ""}}]}),
              orjson.dumps({"choices": [{"delta": {"reasoning_content": "think"}}]}),
              orjson.dumps({"choices": [{"delta": {"content": "é✓"}, "finish_reason": "stop"}]})]
    assert bulk(events) == (["think", "é✓"], "stop", None, False) == per_event(events)


@pytest.mark.parametrize("events", [
    [b'{"error": {"message": "boom"}}'],
    [b'{"object": "error", "message": "boom"}'],
    [b'{"choices": [{"message": {"content": "x"}}]}'],
    [b"{},{}"],  # would be two array elements
    [completion("a"), b"[DONE]", completion("b")],  # [DONE] not last
    [b'{"usage": {"completion_tokens": -1}}'],
    [b'{"choices": [{"text": 5}]}'],
    [b"not json"],
])
def test_unusual_shapes_decline_to_the_per_event_path(events: list[bytes]) -> None:
    assert bulk(events) is None


def test_feed_joined_declines_multiline_events_crlf_and_pending_state() -> None:
    p = SSEParser()
    assert p.feed_joined(b"data: a\ndata: b\n\n") is None
    assert p.feed_joined(b"data: a\r\n\r\n") is None
    assert p.feed_joined(b": comment\n\ndata: a\n\n") is None
    assert p.feed_joined(b"data: a\n\ndata: b") is None  # unfinished event
    p.feed(b"data: x")  # pending bytes: only the general parser may go on
    assert p.feed_joined(b"data: a\n\n") is None
    assert SSEParser().feed_joined(b"data: a\n\ndata: b\n\n") == (b"a" + JOIN + b"b", 2)


def test_dechunk_whole_proves_its_split_or_declines() -> None:
    def chunked(*ps: bytes) -> bytes:
        return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in ps)

    assert _dechunk_whole(chunked(b"ab", b"cde")) == (b"abcde", False)
    assert _dechunk_whole(chunked(b"ab") + b"0\r\n\r\n") == (b"ab", True)
    assert _dechunk_whole(chunked(b"a\r\nb", b"c")) is None  # CRLF inside a payload
    assert _dechunk_whole(chunked(b"ab")[:-1]) is None  # unfinished chunk
    assert _dechunk_whole(b"0\r\n\r\n") is None  # only the last chunk: the general loop
    assert _dechunk_whole(b"2;ext=1\r\nab\r\n") is None  # chunk extensions
    assert _dechunk_whole(b"02\r\nab\r\n") is None  # a size we would not write


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
values = st.none() | st.booleans() | st.integers(-5, 5) | texts | st.just({}) | st.just([])
choice = st.fixed_dictionaries({}, optional={
    "text": values, "delta": st.fixed_dictionaries({}, optional={
        "content": values, "reasoning": values, "reasoning_content": values, "role": values})
    | values, "finish_reason": values, "index": values, "message": values})
event = st.fixed_dictionaries({}, optional={
    "choices": st.lists(choice, max_size=2) | values,
    "usage": st.fixed_dictionaries({}, optional={"completion_tokens": values,
                                                  "prompt_tokens": values}) | values,
    "error": values, "object": st.sampled_from(["error", "text_completion"]) | values,
}).map(orjson.dumps)


@settings(max_examples=300, deadline=timedelta(milliseconds=500))
@given(st.lists(event, min_size=1, max_size=6), st.booleans())
def test_bulk_agrees_with_per_event_whenever_it_answers(events: list[bytes], done: bool) -> None:
    events = events + [b"[DONE]"] if done else events
    got = bulk(events)
    if got is not None:
        assert got == per_event(events)


@settings(max_examples=300, deadline=timedelta(milliseconds=500))
@given(event)
def test_decode_one_agrees_with_per_event_whenever_it_answers(data: bytes) -> None:
    """The paced hot path (one event per read) gives the per-event answer or declines; it
    declines errors (those take the per-event path, which words them)."""
    got = decode_one(data)
    if got is not None:
        ref = per_event([data])
        assert ref not in ("malformed", "error"), (data, got)
        assert isinstance(ref, tuple)
        texts, fin, use, _ = ref
        text, fin1, use1 = got
        # the feeder keeps a finish reason or usage only when truthy, as per_event does
        assert ([text] if text else []) == texts and (fin1 or None) == fin
        assert (use1 or None) == use


@pytest.mark.parametrize("data", [
    b'{"error": {"message": "boom"}}',
    b'{"object": "error", "message": "bad"}',
    b'{"choices": [{"message": {"content": "x"}}]}',
    b'{"choices": [{"delta": {}, "message": {"content": "x"}}]}',
    b'{"error": null, "choices": [{"text": "a"}]}',
])
def test_decode_one_declines_errors_and_message_shapes(data: bytes) -> None:
    assert decode_one(data) is None
