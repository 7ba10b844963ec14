"""Length distributions for input and output tokens (pure): fixed, uniform, clipped normal, list.

Spelled on the command line as ``128``, ``uniform:64:256``, ``normal:512:64`` (mean, std;
optionally ``normal:512:64:256:768`` with explicit clip bounds) or ``file:lens.txt`` (one length
per line, sampled with replacement). A list from a file arrives here already read (``values``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from servemark.errors import ConfigError

KINDS = ("fixed", "uniform", "normal", "file")
EXAMPLES = "128, uniform:64:256, normal:512:64 or file:lens.txt"


@dataclass(frozen=True, slots=True)
class LengthDist:
    """A distribution of token lengths (all integers ≥ 1)."""

    kind: str
    low: int = 1
    high: int = 1
    mean: float = 0.0
    std: float = 0.0
    path: str | None = None  # file: where the list comes from (for messages and records)
    values: tuple[int, ...] = ()

    def sample(self, rng: random.Random) -> int:
        if self.kind == "fixed":
            return self.low
        if self.kind == "uniform":
            return rng.randint(self.low, self.high)
        if self.kind == "normal":
            # rejection would bias nothing but can loop on tight bounds; clipping is what sites do
            return min(self.high, max(self.low, round(rng.gauss(self.mean, self.std))))
        if not self.values:
            raise ConfigError(f"length list {self.path} was not loaded", "internal error")
        return rng.choice(self.values)

    @property
    def max(self) -> int:
        return max(self.values) if self.kind == "file" and self.values else self.high

    def describe(self) -> str:
        if self.kind == "fixed":
            return str(self.low)
        if self.kind == "uniform":
            return f"uniform:{self.low}:{self.high}"
        if self.kind == "normal":
            return f"normal:{self.mean:g}:{self.std:g}:{self.low}:{self.high}"
        return f"file:{self.path}"


def _int(text: str, flag: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{flag} {text!r} is not an integer", f"for example {flag} {EXAMPLES}") from None
    if value < 1:
        raise ConfigError(f"{flag} lengths must be ≥ 1, got {value}", f"for example {flag} {EXAMPLES}")
    return value


def _float(text: str, flag: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{flag} {text!r} is not a number", f"for example {flag} {EXAMPLES}") from None


def parse_length(spec: int | str, flag: str = "--input-len") -> LengthDist:
    """Parse a length spec; a ``file:`` spec comes back with ``path`` set and no values yet."""
    if isinstance(spec, int):
        return LengthDist("fixed", _int(str(spec), flag), _int(str(spec), flag))
    text = spec.strip()
    kind, _, rest = text.partition(":")
    parts = rest.split(":") if rest else []
    if not rest and kind.lstrip("-").isdigit():
        n = _int(kind, flag)
        return LengthDist("fixed", n, n)
    if kind == "uniform" and len(parts) == 2:
        lo, hi = _int(parts[0], flag), _int(parts[1], flag)
        if lo > hi:
            raise ConfigError(f"{flag} {text}: low {lo} > high {hi}", f"for example {flag} uniform:64:256")
        return LengthDist("uniform", lo, hi)
    if kind == "normal" and len(parts) in (2, 4):
        mean, std = _float(parts[0], flag), _float(parts[1], flag)
        if std < 0 or mean < 1:
            raise ConfigError(f"{flag} {text}: needs mean ≥ 1 and std ≥ 0", f"for example {flag} normal:512:64")
        if len(parts) == 4:
            lo, hi = _int(parts[2], flag), _int(parts[3], flag)
        else:  # default clip: three standard deviations, never below 1 token
            lo, hi = max(1, round(mean - 3 * std)), max(1, round(mean + 3 * std))
        if lo > hi:
            raise ConfigError(f"{flag} {text}: clip low {lo} > high {hi}", f"for example {flag} normal:512:64:256:768")
        return LengthDist("normal", lo, hi, mean, std)
    if kind == "file" and rest:
        return LengthDist("file", path=rest)
    raise ConfigError(f"{flag} {text!r} is not a length", f"use {EXAMPLES}")


def parse_length_list(text: str, source: str, flag: str = "--input-len") -> tuple[int, ...]:
    """Lengths from a file's text: one integer per line; blank lines and ``#`` comments skipped."""
    values: list[int] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        item = line.split("#", 1)[0].strip()
        if not item:
            continue
        try:
            value = int(item)
        except ValueError:
            raise ConfigError(f"{source}:{lineno}: {item!r} is not an integer length",
                              f"{flag} file: expects one integer per line") from None
        if value < 1:
            raise ConfigError(f"{source}:{lineno}: length {value} must be ≥ 1",
                              f"{flag} file: expects positive integers")
        values.append(value)
    if not values:
        raise ConfigError(f"{source} contains no lengths", f"{flag} file: expects one integer per line")
    return tuple(values)
