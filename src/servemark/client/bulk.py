"""Decode every SSE event of one network read in a single call (pure: bytes in, values out).

Why: at hundreds of thousands of chunks per second, a JSON decode and a dozen dict look-ups per
event are most of a load generator's CPU. The events of one read are joined into one JSON array
and decoded by msgspec into small typed structs that keep only the fields token counting needs
(unknown fields are skipped without building objects). Anything outside the common shapes —
errors, ``message`` instead of ``delta``, types that do not fit, a bad usage count — returns None,
and the caller decodes those events one by one with :func:`servemark.client.openai.parse_event`,
so results and error messages are exactly the per-event ones. Without msgspec, ``AVAILABLE`` is
False and callers use the per-event path.
"""

from __future__ import annotations

from typing import Any

try:
    import msgspec
    from msgspec import UNSET, UnsetType
except ImportError:  # pragma: no cover - msgspec is a dependency; this keeps a clean fallback
    msgspec = None  # type: ignore[assignment]

from servemark.client.sse import JOIN

AVAILABLE = msgspec is not None
_DONE = b"[DONE]"
_DONE_TAIL = JOIN + _DONE

# (texts of the content events in order, last finish_reason, last usage, saw [DONE])
Bulk = tuple[list[str], "str | None", "dict[str, Any] | None", bool]

if msgspec is not None:

    class _Delta(msgspec.Struct, gc=False):
        content: str | None = None
        reasoning_content: str | None = None
        reasoning: str | None = None

    class _Choice(msgspec.Struct, gc=False):
        text: str | None | UnsetType = UNSET
        delta: _Delta | None = None
        finish_reason: str | None = None
        message: msgspec.Raw | UnsetType = UNSET  # the non-streaming shape: per-event path

    class _Chunk(msgspec.Struct, gc=False):
        choices: list[_Choice] | None = None
        usage: dict[str, Any] | None = None
        # errors take the per-event path (it words them); Raw: present or not, never built
        error: msgspec.Raw | UnsetType = UNSET
        object: str | None = None

    _decode = msgspec.json.Decoder(list[_Chunk]).decode
    _decode_one = msgspec.json.Decoder(_Chunk).decode
    _Errors: tuple[type[Exception], ...] = (msgspec.DecodeError, msgspec.ValidationError)


def _count_ok(usage: dict[str, Any]) -> bool:
    for key in ("prompt_tokens", "completion_tokens"):
        value = usage.get(key)
        if value is not None and (type(value) is not int or value < 0):
            return False
    return True


def _delta_text(d: _Delta | None) -> str:
    if d is None:
        return ""
    t = d.content or ""
    if d.reasoning_content:
        t += d.reasoning_content
    if d.reasoning:
        t += d.reasoning
    return t


def _plain(c: _Chunk) -> bool:
    """Not an error and not the ``message`` shape (those take the per-event path)."""
    if c.error is not UNSET or c.object == "error":
        return False
    ch = c.choices
    return not ch or ch[0].message is UNSET


def decode_one(payload: bytes) -> tuple[str, str | None, dict[str, Any] | None] | None:
    """One event's (text, finish_reason, usage) — the paced hot path, one network read per
    event. None: decode it with the per-event path (errors, [DONE], unusual shapes)."""
    if not AVAILABLE:
        return None
    try:
        c = _decode_one(payload)
    except _Errors:
        return None
    if not _plain(c):
        return None
    u = c.usage
    if u and not _count_ok(u):
        return None
    ch = c.choices
    if not ch:
        return "", None, u
    x = ch[0]
    t = x.text
    if t is UNSET:
        t = _delta_text(x.delta)
    return t or "", x.finish_reason, u


def decode_joined(payloads: bytes, n: int) -> Bulk | None:
    """``payloads``: the data of ``n`` events joined by :data:`servemark.client.sse.JOIN` (as
    :meth:`SSEParser.feed_joined` returns them). None: decode these events one by one."""
    if not AVAILABLE:
        return None
    done = False
    if payloads.endswith(_DONE):
        if payloads == _DONE:
            return [], None, None, True
        if not payloads.endswith(_DONE_TAIL):
            return None
        payloads = payloads[: -len(_DONE_TAIL)]
        n -= 1
        done = True
    try:
        if n == 1:  # a paced stream's usual read: no array to build
            chunks = [_decode_one(payloads)]
        else:
            chunks = _decode(b"[" + payloads.replace(JOIN, b",") + b"]")
    except _Errors:
        return None
    if len(chunks) != n:  # an event such as "data: {},{}" would pass as two
        return None
    texts: list[str] = []
    append = texts.append
    finish = None
    usage = None
    for c in chunks:
        if not _plain(c):
            return None
        u = c.usage
        if u:
            if not _count_ok(u):
                return None
            usage = u
        ch = c.choices
        if not ch:
            continue
        x = ch[0]
        t = x.text
        if t is UNSET:
            t = _delta_text(x.delta)
        if t:
            append(t)
        if x.finish_reason:
            finish = x.finish_reason
    return texts, finish, usage, done
