"""Incremental Server-Sent Events framing on raw bytes (no I/O, no JSON).

Follows the WHATWG event-stream rules that matter for LLM servers: lines end in LF, CR or CRLF
(a CRLF may be split across network reads), ``data:`` lines of one event are joined with LF,
lines starting with ``:`` are comments, a blank line dispatches the event. Only ``data`` payloads
are returned; OpenAI-style servers carry everything there.
"""

from __future__ import annotations

JOIN = b"\n\ndata: "  # what separates the payloads :meth:`SSEParser.feed_joined` returns


class SSEParser:
    """Feed it network reads in any split; it returns the data payloads of completed events."""

    __slots__ = ("_buf", "_data", "_pending_cr")

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[bytes] = []
        self._pending_cr = False

    def feed(self, chunk: bytes) -> list[bytes]:
        """Consume one read; return the ``data`` payload of every event it completed."""
        if not self._buf and not self._data and not self._pending_cr and b"\r" not in chunk:
            fast = self._feed_simple(chunk)
            if fast is not None:
                return fast
        return self._feed_general(chunk)

    def feed_joined(self, chunk: bytes) -> tuple[bytes, int] | None:
        """The hot path's bulk form: when nothing is pending and the read is whole single-line
        ``data: X`` events, return their payloads joined by :data:`JOIN` and how many there are
        (a few scans at C speed, no per-event work). None: use :meth:`feed` for this read."""
        if (self._buf or self._data or self._pending_cr or chunk[:6] != b"data: "
                or chunk[-2:] != b"\n\n"):
            return None
        n = chunk.count(JOIN) + 1
        # every LF belongs to a separator (so no event has a second line) and no CR ends a line
        if chunk.count(b"\n") != 2 * n or b"\r" in chunk:
            return None
        return chunk[6:-2], n

    def feed_one(self, chunk: bytes) -> bytes | None:
        """The paced hot path: the payload when nothing is pending and the read is exactly one
        single-line ``data: X`` event (then nothing is kept); None: use :meth:`feed_joined`."""
        if (self._buf or self._data or self._pending_cr or chunk[:6] != b"data: "
                or chunk[-2:] != b"\n\n" or chunk.count(b"\n") != 2 or b"\r" in chunk):
            return None
        return chunk[6:-2]

    def _feed_simple(self, chunk: bytes) -> list[bytes] | None:
        """The common case on the hot path — whole ``data: X`` events separated by blank lines —
        in one split; None when the read holds anything else (then the general rules apply)."""
        parts = chunk.split(b"\n\n")
        tail = parts.pop()
        if b"\n" in tail:
            return None
        events = []
        for part in parts:
            if part[:6] != b"data: " or b"\n" in part:
                return None
            events.append(part[6:])
        self._buf = tail
        return events

    def _feed_general(self, chunk: bytes) -> list[bytes]:
        if self._pending_cr:
            self._pending_cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if b"\r" in chunk:
            self._pending_cr = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if self._buf:
            chunk = self._buf + chunk
        lines = chunk.split(b"\n")
        self._buf = lines.pop()
        events: list[bytes] = []
        data = self._data
        for line in lines:
            if not line:
                if data:
                    events.append(data[0] if len(data) == 1 else b"\n".join(data))
                    data = self._data = []
                continue
            if line[:5] == b"data:":
                value = line[5:]
                data.append(value[1:] if value[:1] == b" " else value)
            elif line == b"data":
                data.append(b"")
            # other fields (event, id, retry) and ':' comments carry nothing we use
        return events

    def close(self) -> list[bytes]:
        """End of stream: a final event without its blank line is still delivered (lenient)."""
        events: list[bytes] = []
        if self._buf:
            events.extend(self.feed(b"\n"))
        if self._data:
            data = self._data
            events.append(data[0] if len(data) == 1 else b"\n".join(data))
            self._data = []
        return events

    @property
    def idle(self) -> bool:
        """Nothing pending: a read that is whole events starts afresh."""
        return not (self._buf or self._data or self._pending_cr)

    @property
    def pending_bytes(self) -> int:
        """Bytes of an unfinished line still buffered (for diagnosing truncated streams)."""
        return len(self._buf) + sum(len(d) for d in self._data)
