"""Property tests of the response decoders and the SSE framing: whatever a server sends, they
return well-typed values or raise MalformedResponse — never another exception, never a hang
(hypothesis' per-example deadline bounds the time)."""

from __future__ import annotations

from datetime import timedelta

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from servemark.client.openai import (
    Delta,
    MalformedResponse,
    decode_event,
    error_from_body,
    parse_event,
)
from servemark.client.sse import SSEParser

FAST = settings(max_examples=400, deadline=timedelta(milliseconds=500))

texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)  # JSON-encodable
scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
           | st.floats(allow_nan=False) | texts)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["text", "delta", "message", "content", "choices", "usage", "error",
                         "object", "finish_reason", "reasoning", "reasoning_content", "message",
                         "detail", "completion_tokens"]) | texts, inner, max_size=5),
    max_leaves=20,
)
# shapes close to real chunks, with every field allowed to hold any JSON value
choice = st.fixed_dictionaries({}, optional={
    "text": json_values, "delta": json_values, "message": json_values, "finish_reason": json_values,
    "index": json_values})
chunk = st.fixed_dictionaries({}, optional={
    "choices": st.lists(choice | json_values, max_size=2) | json_values, "usage": json_values,
    "error": json_values, "object": st.sampled_from(["error", "text_completion"]) | json_values})
payloads = st.binary(max_size=300) | json_values.map(orjson.dumps) | chunk.map(orjson.dumps)


def _check_parse(data: bytes) -> None:
    try:
        text, finish, usage, error = parse_event(data)
    except MalformedResponse:
        return
    assert isinstance(text, str)
    assert finish is None or isinstance(finish, str)
    assert usage is None or isinstance(usage, dict)
    assert error is None or isinstance(error, str)


def _check_decode(data: bytes) -> None:
    try:
        delta = decode_event(data)
    except MalformedResponse:
        return
    assert isinstance(delta, Delta) and isinstance(delta.text, str)
    assert delta.finish_reason is None or isinstance(delta.finish_reason, str)
    assert delta.error is None or isinstance(delta.error, str)


@FAST
@given(payloads)
def test_parse_event_only_raises_malformed(data: bytes) -> None:
    _check_parse(data)


@FAST
@given(payloads)
def test_decode_event_only_raises_malformed_and_agrees_with_parse_event(data: bytes) -> None:
    _check_decode(data)
    try:
        fast = parse_event(data)
    except MalformedResponse:
        fast = None
    try:
        slow = decode_event(data)
    except MalformedResponse:
        slow = None
    if fast is not None and slow is not None:
        assert fast[0] == slow.text and fast[1] == slow.finish_reason and fast[2] == slow.usage


@FAST
@given(payloads)
def test_error_from_body_never_raises(data: bytes) -> None:
    text = error_from_body(data)
    assert isinstance(text, str) and 0 < len(text) <= 300


@FAST
@given(st.lists(st.binary(max_size=60), max_size=12))
def test_sse_parser_any_bytes_any_split(reads: list[bytes]) -> None:
    parser = SSEParser()
    events = [e for r in reads for e in parser.feed(r)] + parser.close()
    assert all(isinstance(e, bytes) for e in events)
    whole = SSEParser()
    assert [*whole.feed(b"".join(reads)), *whole.close()] == events


@FAST
@given(st.lists(st.binary(max_size=40).filter(lambda b: b"\n" not in b and b"\r" not in b),
                min_size=1, max_size=6), st.data())
def test_sse_parser_recovers_every_event_across_splits(payloads: list[bytes], data) -> None:
    wire = b"".join(b"data: " + p + b"\n\n" for p in payloads)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=8)))
    parser = SSEParser()
    got, last = [], 0
    for cut in [*cuts, len(wire)]:
        got.extend(parser.feed(wire[last:cut]))
        last = cut
    got.extend(parser.close())
    assert got == payloads


BAD_SHAPES = [
    b'{"choices":[{"text":[null]}]}',
    b'{"choices":[{"text":5}]}',
    b'{"choices":[{"delta":5}]}',
    b'{"choices":[{"delta":{"content":{"a":1}}}]}',
    b'{"choices":[{"delta":{"reasoning":[1]}}]}',
    b'{"choices":[{"text":"a","finish_reason":7}]}',
    b'{"choices":[],"usage":{"completion_tokens":"12"}}',
    b'{"choices":[],"usage":{"prompt_tokens":-3}}',
]


def test_ill_typed_fields_are_malformed_not_crashes_later() -> None:
    """Shapes found by the property tests: they used to pass the decoders and crash the request
    path (joining texts, int() of usage) outside its error handling."""
    import pytest

    for data in BAD_SHAPES:
        with pytest.raises(MalformedResponse):
            parse_event(data)
        with pytest.raises(MalformedResponse):
            decode_event(data)
