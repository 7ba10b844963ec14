"""Arrival schedules (pure): when the next request of an open-loop run is due.

Schedulers only answer "when"; they take the RNG as a parameter and never sleep. Offsets are
seconds from the start of the measured window; the runner sleeps until ``t0 + offset`` (absolute
targets, so timer slack never accumulates into drift).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

ARRIVALS = ("poisson", "constant")


@dataclass(frozen=True, slots=True)
class LoadPoint:
    """One load level: closed loop with ``concurrency`` in flight, or open loop at ``request_rate``.

    ``max_concurrency`` caps in-flight requests of an open-loop run (requests then wait; the
    schedule lag shows it)."""

    concurrency: int | None = None
    request_rate: float | None = None
    arrival: str = "poisson"
    max_concurrency: int | None = None

    @property
    def label(self) -> str:
        if self.request_rate is not None:
            rate = f"{self.request_rate:g}"
            return f"rate={rate}" if self.arrival == "poisson" else f"rate={rate}-{self.arrival}"
        return f"c={self.concurrency}"

    @property
    def is_open_loop(self) -> bool:
        return self.request_rate is not None


def arrival_offsets(rate: float, arrival: str, rng: random.Random) -> Iterator[float]:
    """Endless intended send offsets (seconds) for a mean rate in requests/s.

    ``poisson``: exponential inter-arrival gaps with mean 1/rate; ``constant``: exactly 1/rate.
    The first request is sent at offset 0.
    """
    if rate <= 0:
        raise ValueError(f"request rate must be positive, got {rate}")
    if arrival not in ARRIVALS:
        raise ValueError(f"unknown arrival process {arrival!r}; choose one of {', '.join(ARRIVALS)}")
    t = 0.0
    if arrival == "constant":
        i = 0
        while True:
            yield i / rate
            i += 1
    while True:
        yield t
        t += rng.expovariate(rate)
