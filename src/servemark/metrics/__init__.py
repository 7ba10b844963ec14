"""Per-request records and the pure functions that turn them into metrics."""

from servemark.metrics.record import RequestRecord

__all__ = ["RequestRecord"]
