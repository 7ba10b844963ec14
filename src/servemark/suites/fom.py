"""The three-scenario figure-of-merit suite (FOM1 prefill-heavy, FOM2 decode-heavy, FOM3
long-context); the total FOM is the sum of the three throughputs (tokens/s), and the
FLOP-rate form (suites.flops) is summed the same way when the model's shape is known.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from servemark.suites.measurement import Measurement
from servemark.suites.point import Point


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    input_len: int
    output_len: int
    max_model_len: int | None = None  # None: the engine's default (the model's own limit)
    description: str = ""


DEFAULT_SCENARIOS: tuple[Scenario, ...] = (
    Scenario("FOM1", 8192, 1, None, "prefill-heavy: large input, small output"),
    Scenario("FOM2", 512, 8192, None, "decode-heavy: moderate input, large output"),
    Scenario("FOM3", 8192, 8192, 32768, "long context: large input and output"),
)


def fom_points(scenarios: tuple[Scenario, ...] | list[Scenario], batch_size: int,
               tensor_parallel: int = 1, pipeline_parallel: int = 1) -> list[Point]:
    return [Point(s.input_len, s.output_len, batch_size, tensor_parallel, pipeline_parallel,
                  s.max_model_len, s.name) for s in scenarios]


@dataclass
class FomResult:
    """One measurement per scenario; totals only when every scenario was measured."""

    results: list[Measurement] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return bool(self.results) and all(m.ok for m in self.results)

    @property
    def total_throughput_tokens_per_s(self) -> float | None:
        values = [m.throughput_tokens_per_s for m in self.results]
        if not self.complete or any(v is None for v in values):
            return None
        return sum(v for v in values if v is not None)

    @property
    def total_flop_rate_per_s(self) -> float | None:
        values = [m.flop_rate_per_s for m in self.results]
        if not self.complete or any(v is None for v in values):
            return None
        return sum(v for v in values if v is not None)
