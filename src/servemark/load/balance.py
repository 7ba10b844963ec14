"""Client-side load balancing: which endpoint the next request goes to (pure, no I/O).

``round-robin`` cycles through the endpoints in order; ``least-outstanding`` picks the endpoint
with the fewest requests in flight (ties go round-robin, so equal servers share equally). The
runner asks :meth:`EndpointPicker.acquire` per request and calls ``release`` when it ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

POLICIES = ("round-robin", "least-outstanding")


class EndpointPicker(Protocol):
    def acquire(self) -> str: ...

    def release(self, endpoint: str) -> None: ...


class _Base:
    def __init__(self, endpoints: Sequence[str]) -> None:
        if not endpoints:
            raise ValueError("at least one endpoint is needed")
        self.endpoints = list(endpoints)
        self.outstanding = dict.fromkeys(self.endpoints, 0)
        self._next = 0

    def release(self, endpoint: str) -> None:
        self.outstanding[endpoint] -= 1


class RoundRobin(_Base):
    """Endpoint i, i+1, ... in turn, whatever they are doing."""

    def acquire(self) -> str:
        url = self.endpoints[self._next % len(self.endpoints)]
        self._next += 1
        self.outstanding[url] += 1
        return url


class LeastOutstanding(_Base):
    """The endpoint with the fewest requests in flight; among equals, the next in turn."""

    def acquire(self) -> str:
        n = len(self.endpoints)
        order = [self.endpoints[(self._next + k) % n] for k in range(n)]
        url = min(order, key=lambda u: self.outstanding[u])  # min keeps the first of equals
        self._next = (self.endpoints.index(url) + 1) % n
        self.outstanding[url] += 1
        return url


def make_picker(policy: str, endpoints: Sequence[str]) -> EndpointPicker:
    if policy == "round-robin":
        return RoundRobin(endpoints)
    if policy == "least-outstanding":
        return LeastOutstanding(endpoints)
    raise ValueError(f"unknown load-balancing policy {policy!r}; choose one of {', '.join(POLICIES)}")
