"""RequestRecord: the raw measurement of one request, one JSON line in requests.jsonl.

Only raw, monotonic timestamps (seconds, relative to the run's start) and counts live here;
every derived metric (TTFT, ITL, TPOT, E2E) is computed in :mod:`servemark.metrics.derive`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(slots=True)
class RequestRecord:
    """One request as the client saw it."""

    request_id: int
    load_point: str
    endpoint: str
    api: str  # "completions" | "chat"
    start_s: float  # request sent, seconds since the run's t0 (monotonic clock)
    end_s: float  # last byte received (or failure detected)
    chunk_times_s: list[float] = field(default_factory=list)  # content chunks, since start_s
    scheduled_s: float | None = None  # intended send time (open loop), since t0
    requested_input_tokens: int | None = None
    requested_output_tokens: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    token_source: str | None = None  # "usage" | "tokenizer" | "chunks"
    status: int | None = None  # HTTP status
    ok: bool = False
    error_kind: str | None = None  # http_status | timeout | connection | malformed | truncated | server_error | cancelled
    error: str | None = None
    finish_reason: str | None = None
    output_chars: int = 0
    streamed: bool = True
    conversation_id: int | None = None  # multi-turn workloads (turns are numbered from 1)
    turn: int | None = None
    worker: str | None = None  # the client process that sent it (--workers: w<i>, Ray: w<i>@<node IP>)
    attempts: int = 1  # sends of this request (retries of 429/503/connection errors); timing is from the first

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestRecord:
        """Tolerant of fields added by newer versions (ignored) and missing optional ones."""
        known = _KNOWN.get(cls)
        if known is None:  # once per class: this runs for every line of requests.jsonl
            known = _KNOWN[cls] = frozenset(f.name for f in fields(cls))
        return cls(**{k: v for k, v in data.items() if k in known})


_KNOWN: dict[type, frozenset[str]] = {}
