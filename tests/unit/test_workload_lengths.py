"""Length distributions: parsing, clear errors, and samples within statistical tolerance."""

from __future__ import annotations

import random
import statistics

import pytest

from servemark.errors import ConfigError
from servemark.workload.files import resolve_lengths
from servemark.workload.lengths import LengthDist, parse_length, parse_length_list

N = 20_000


def samples(spec: str, seed: int = 0) -> list[int]:
    dist = parse_length(spec)
    rng = random.Random(seed)
    return [dist.sample(rng) for _ in range(N)]


def test_fixed_accepts_int_and_digits() -> None:
    assert parse_length(128) == parse_length("128") == LengthDist("fixed", 128, 128)
    assert set(samples("7")) == {7}


def test_uniform_covers_range_evenly() -> None:
    xs = samples("uniform:64:256")
    assert min(xs) == 64 and max(xs) == 256
    # mean of a discrete uniform on [64, 256] is 160, sd ≈ 55.7; 5 standard errors of tolerance
    assert statistics.fmean(xs) == pytest.approx(160, abs=5 * 55.7 / N**0.5)
    low_half = sum(x <= 160 for x in xs) / N
    assert low_half == pytest.approx(97 / 193, abs=0.02)


def test_normal_mean_std_and_default_clip() -> None:
    xs = samples("normal:512:64")
    assert statistics.fmean(xs) == pytest.approx(512, abs=5 * 64 / N**0.5)
    assert statistics.pstdev(xs) == pytest.approx(64, rel=0.05)
    assert min(xs) >= 512 - 192 and max(xs) <= 512 + 192


def test_normal_explicit_clip_bounds() -> None:
    xs = samples("normal:100:50:80:120")
    assert min(xs) == 80 and max(xs) == 120
    # about 34.5% of a normal lies below mean − 0.4 sd: those all land on the clip bound
    assert sum(x == 80 for x in xs) / N == pytest.approx(0.345, abs=0.02)


def test_normal_never_below_one_token() -> None:
    assert min(samples("normal:3:10")) >= 1


def test_file_list_sampled_with_replacement(tmp_path) -> None:
    path = tmp_path / "lens.txt"
    path.write_text("# lengths seen in production\n100\n\n200  # long\n200\n")
    dist = resolve_lengths(parse_length(f"file:{path}"), "--input-len")
    assert dist.values == (100, 200, 200) and dist.max == 200
    rng = random.Random(1)
    xs = [dist.sample(rng) for _ in range(N)]
    assert sum(x == 200 for x in xs) / N == pytest.approx(2 / 3, abs=0.02)


def test_same_seed_same_lengths() -> None:
    assert samples("normal:512:64", seed=5) == samples("normal:512:64", seed=5)
    assert samples("normal:512:64", seed=5) != samples("normal:512:64", seed=6)


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("0", "must be ≥ 1"),
        ("-3", "must be ≥ 1"),
        ("uniform:9:3", "low 9 > high 3"),
        ("uniform:1", "is not a length"),
        ("normal:10:-1", "std ≥ 0"),
        ("normal:x:1", "is not a number"),
        ("poisson:3", "is not a length"),
        ("file:", "is not a length"),
        ("abc", "is not a length"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse_length(spec)


def test_bad_length_file_names_file_and_line(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"lens.txt:3: 'x1' is not an integer"):
        parse_length_list("1\n2\nx1\n", "lens.txt")
    with pytest.raises(ConfigError, match="lens.txt:1: length 0 must be ≥ 1"):
        parse_length_list("0\n", "lens.txt")
    with pytest.raises(ConfigError, match="contains no lengths"):
        parse_length_list("# nothing\n", "lens.txt")
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_lengths(parse_length(f"file:{tmp_path / 'missing.txt'}"), "--input-len")
