"""Arrival schedules: rates and inter-arrival distributions within statistical tolerance."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest

from servemark.load.schedule import LoadPoint, arrival_offsets


def take(rate: float, arrival: str, n: int, seed: int = 1) -> np.ndarray:
    return np.array(list(itertools.islice(arrival_offsets(rate, arrival, random.Random(seed)), n)))


def test_constant_is_exact() -> None:
    t = take(4.0, "constant", 100)
    assert t[0] == 0.0
    assert np.allclose(np.diff(t), 0.25)


@pytest.mark.parametrize("rate", [0.5, 10.0, 1000.0])
def test_poisson_rate_and_exponential_gaps(rate: float) -> None:
    n = 20000
    gaps = np.diff(take(rate, "poisson", n + 1, seed=int(rate * 10)))
    # mean gap 1/rate within 4 standard errors (std of exponential = mean)
    se = (1 / rate) / math.sqrt(n)
    assert abs(gaps.mean() - 1 / rate) < 4 * se
    # coefficient of variation of an exponential is 1
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.05)
    # memoryless shape: P(gap > mean) = e^-1
    assert (gaps > 1 / rate).mean() == pytest.approx(math.exp(-1), abs=0.015)
    # Kolmogorov–Smirnov distance to the exponential CDF
    xs = np.sort(gaps)
    cdf = 1 - np.exp(-rate * xs)
    ecdf = np.arange(1, n + 1) / n
    assert np.max(np.abs(ecdf - cdf)) < 1.63 / math.sqrt(n)  # 1% critical value


def test_seed_reproduces_schedule() -> None:
    assert np.array_equal(take(3, "poisson", 50, seed=7), take(3, "poisson", 50, seed=7))
    assert not np.array_equal(take(3, "poisson", 50, seed=7), take(3, "poisson", 50, seed=8))


def test_bad_rate_and_arrival() -> None:
    with pytest.raises(ValueError):
        next(arrival_offsets(0, "poisson", random.Random()))
    with pytest.raises(ValueError, match="unknown arrival"):
        next(arrival_offsets(1, "gamma", random.Random()))


def test_labels() -> None:
    assert LoadPoint(concurrency=8).label == "c=8"
    assert LoadPoint(request_rate=2.5).label == "rate=2.5"
    assert LoadPoint(request_rate=2, arrival="constant").label == "rate=2-constant"
