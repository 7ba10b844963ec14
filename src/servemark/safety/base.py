"""The checker interface: text in, a verdict with categories and severities out."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Category:
    """One category a checker found, with its severity (0 = none … 7 = most severe)."""

    name: str
    severity: int
    detail: str | None = None  # e.g. which rule matched (never the matched text itself)


@dataclass(frozen=True)
class Verdict:
    """``flagged`` is None when the check itself failed (``error`` says why): a failing safety
    service is data about that request, not a reason to stop."""

    checker: str
    flagged: bool | None
    categories: tuple[Category, ...] = field(default_factory=tuple)
    error: str | None = None

    @property
    def max_severity(self) -> int:
        return max((c.severity for c in self.categories), default=0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SafetyChecker(Protocol):
    """Anything with a name and an async ``check``; implementations must not raise for a
    failure of the service they call (return a Verdict with ``error`` instead)."""

    name: str

    async def check(self, text: str) -> Verdict: ...

    async def close(self) -> None: ...
