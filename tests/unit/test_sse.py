"""SSE framing: any split of the byte stream gives the same events."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from servemark.client.sse import SSEParser

STREAM = (
    b": keep-alive comment\n\n"
    b"data: {\"a\": 1}\n\n"
    b"event: message\r\ndata: line one\r\ndata: line two\r\n\r\n"
    b"id: 7\rdata: cr only\r\r"
    b"data:no-space\n\n"
    b"data\n\n"
    b"data: [DONE]\n\n"
)
EXPECTED = [b'{"a": 1}', b"line one\nline two", b"cr only", b"no-space", b"", b"[DONE]"]


def feed_all(pieces: list[bytes]) -> list[bytes]:
    parser = SSEParser()
    events: list[bytes] = []
    for piece in pieces:
        events.extend(parser.feed(piece))
    events.extend(parser.close())
    return events


def test_whole_stream() -> None:
    assert feed_all([STREAM]) == EXPECTED


def test_split_at_every_byte_position() -> None:
    for i in range(len(STREAM) + 1):
        assert feed_all([STREAM[:i], STREAM[i:]]) == EXPECTED, f"split at {i}"


def test_one_byte_at_a_time() -> None:
    assert feed_all([bytes([b]) for b in STREAM]) == EXPECTED


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_split(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    pieces = [STREAM[a:b] for a, b in zip([0, *points], [*points, len(STREAM)], strict=True)]
    assert feed_all(pieces) == EXPECTED


def test_crlf_split_between_cr_and_lf_does_not_make_an_extra_blank_line() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: x\r") == []
    assert parser.feed(b"\ndata: y\r\n\r\n") == [b"x\ny"]


def test_comments_and_unknown_fields_ignored() -> None:
    assert feed_all([b":c\nretry: 10\nfoo: bar\n\n"]) == []


def test_unterminated_final_event_delivered_on_close() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: tail") == []
    assert parser.pending_bytes > 0
    assert parser.close() == [b"tail"]


@given(st.binary(max_size=300))
def test_never_crashes_on_arbitrary_bytes(data: bytes) -> None:
    parser = SSEParser()
    out = parser.feed(data) + parser.close()
    assert all(isinstance(e, bytes) for e in out)
