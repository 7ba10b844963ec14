"""The C read path (servemark/client/_fastread.c) against the Python one it replaces: the same
one-event test on any bytes, and the same results end to end (the transport tests run both)."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from servemark.client.fasthttp import _whole_chunk
from servemark.client.sse import SSEParser

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the C reader is Linux's")


def _fastread():
    """Every Linux install builds it (setup.py); a missing build is a failure, not a skip."""
    try:
        from servemark.client import _fastread
    except ImportError as exc:
        pytest.fail(f"the C reader was not built ({exc}): install gcc, then `make install` "
                    "(or `pip install -e .`) again")
    return _fastread


def c_one_event(data: bytes) -> bytes | None:
    """The C reader's answer for a read that is one chunk: its event, when the whole read is
    exactly one chunk holding one event; else None."""
    payloads, used = _fastread().split_events(data)
    return payloads[0] if len(payloads) == 1 and used == len(data) else None


def python_one_event(data: bytes) -> bytes | None:
    """What the Python path makes of a read it has no pending bytes for."""
    one = _whole_chunk(data)
    if one is None:
        return None
    payload = SSEParser().feed_one(one)
    return None if payload == b"[DONE]" else payload


def chunk(payload: bytes, upper: bool = False) -> bytes:
    size = (b"%X" if upper else b"%x") % len(payload)
    return size + b"\r\n" + payload + b"\r\n"


TEXT = st.binary(max_size=300)


@given(TEXT, st.booleans())
def test_one_event_matches_python_on_single_events(x: bytes, upper: bool) -> None:
    data = chunk(b"data: " + x + b"\n\n", upper)
    assert c_one_event(data) == python_one_event(data)


@given(st.lists(st.sampled_from([b"data: ", b"\n", b"\r", b"\r\n", b"x", b"[DONE]", b"0",
                                 b"1a", b";ext", b"data:", b" "]), max_size=14), TEXT)
def test_one_event_never_claims_what_python_would_not(parts: list[bytes], tail: bytes) -> None:
    """On arbitrary bytes the C test may say no where Python says yes (it accepts only plain
    hex sizes, leaving the rest to the Python path), but a yes is always Python's answer."""
    body = b"".join(parts)
    for data in (body + tail, chunk(body), chunk(body) + tail, chunk(body + b"\n\n")):
        got = c_one_event(data)
        if got is not None:
            assert got == python_one_event(data)


@pytest.mark.parametrize("data", [
    b"9\r\ndata: x\n\n\r\n",           # the paced read
    b"F\r\ndata: {\"a\":1}\n\n\r\n",   # upper-case size
])
def test_one_event_accepts(data: bytes) -> None:
    assert c_one_event(data) == python_one_event(data) is not None


@pytest.mark.parametrize("data", [
    b"e\r\ndata: [DONE]\n\n\r\n",                  # the end marker: the slow path counts it
    b"9\r\ndata: x\n\n\r\n0\r\n\r\n",              # and the last chunk
    b"9\r\ndata: x\n\n\r\n9\r\ndata: y\n\n\r\n",   # two chunks
    b"b\r\ndata: x\ny\n\n\r\n",                    # a second line
    b"a\r\ndata: x\r\n\n\r\n",                     # a CR
    b"9;e\r\ndata: x\n\n\r\n",                     # a chunk extension
    b"9\r\ndata: x\n\n\r",                         # cut short
    b"9\r\nevent: x\n\r\n",                        # not data
])
def test_one_event_declines(data: bytes) -> None:
    assert c_one_event(data) is None


PAYLOADS = st.one_of(
    st.builds(lambda x: b"data: " + x + b"\n\n", TEXT),  # mostly events the fast path takes
    st.sampled_from([b"data: [DONE]\n\n", b"data: a\nb\n\n", b"data: a\r\n\r\n", b": c\n\n",
                     b"data: x\n", b"event: e\n\n", b""]),
)


@given(st.lists(PAYLOADS, max_size=8), st.sampled_from([b"", b"0\r\n\r\n", b"9\r\ndata", b"z"]))
def test_split_events_takes_the_leading_chunks_python_takes_one_by_one(
        payloads: list[bytes], tail: bytes) -> None:
    """A read of several chunks: the C reader hands on exactly the leading chunks that Python's
    one-event test accepts, one payload each, and leaves the rest (from the first chunk it
    declines) to the Python path."""
    chunks = [chunk(p) for p in payloads]
    expected: list[bytes] = []
    used = 0
    for c in chunks:
        one = python_one_event(c)
        if one is None:
            break
        expected.append(one)
        used += len(c)
    data = b"".join(chunks) + tail
    assert _fastread().split_events(data) == (expected, used)
