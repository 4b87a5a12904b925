"""Quality search for a target size or bpp, on synthetic size curves and on the shipped model."""

from __future__ import annotations

import math
import sys

import numpy as np

import pytest
from conftest import SHIPPED

import edgecodec
from edgecodec.codec.api import decode_array, parse_size
from edgecodec.codec.rate_search import SCORE_RESOLUTION, TOLERANCE, search_quality, search_score

MAX_Q = 65535


class Counting:
    """A monotone synthetic encoder that counts its calls."""

    def __init__(self, size_of):
        self.size_of = size_of
        self.calls = 0

    def __call__(self, q: int) -> bytes:
        assert 0 <= q <= MAX_Q and isinstance(q, int)
        self.calls += 1
        return b"x" * self.size_of(q)


def linear(q: int) -> int:
    return 100 + q // 10  # 100 .. 6653 bytes


@pytest.mark.parametrize("target", [104, 150, 1000, 3000, 4567, 6000, 6652])
def test_lands_within_tolerance_below_target(target):
    encode = Counting(linear)
    result = search_quality(encode, target)
    assert len(result.data) <= target
    assert len(result.data) >= (1 - TOLERANCE) * target
    assert result.reached
    assert len(result.data) == linear(result.quality_q16)
    assert result.target_bytes == target
    assert encode.calls <= 20


def test_target_above_the_largest_size_gives_top_quality():
    result = search_quality(Counting(linear), 10_000)
    assert result.quality_q16 == MAX_Q and len(result.data) == linear(MAX_Q)
    assert not result.reached
    exact = search_quality(Counting(linear), linear(MAX_Q))
    assert exact.quality_q16 == MAX_Q and exact.reached


def test_target_below_the_smallest_size_gives_quality_zero():
    result = search_quality(Counting(linear), 50)
    assert result.quality_q16 == 0 and len(result.data) == 100
    assert not result.reached


def test_exponential_curve():
    encode = Counting(lambda q: int(200 * math.exp(6 * q / MAX_Q)))  # 200 .. ~80,000 bytes
    for target in (250, 1_000, 9_999, 50_000):
        result = search_quality(encode, target)
        assert (1 - TOLERANCE) * target <= len(result.data) <= target, (target, len(result.data))


def test_step_curve_prefers_the_size_below():
    # Nothing within 3% either side: the highest quality that fits.
    result = search_quality(Counting(lambda q: 100 if q < 30_000 else 1_000), 500)
    assert len(result.data) == 100 and result.quality_q16 == 29_999
    assert not result.reached


def test_step_curve_takes_the_size_just_above_when_within_tolerance():
    result = search_quality(Counting(lambda q: 100 if q < 30_000 else 1_020), 1_000)
    assert len(result.data) == 1_020 and result.quality_q16 == 30_000
    assert result.reached


@pytest.mark.parametrize("target", [150, 1000, 3000, 4567, 5600])
def test_estimate_guides_the_search_in_few_tries(target):
    # A costly encoder (refinement) whose sizes are the cheap estimate's times a slowly varying
    # factor (0.8 .. 0.9): the guided search lands in the band in at most 3 tries, where plain
    # bisection takes many more.
    def refined(q: int) -> int:
        return int(linear(q) * (0.8 + 0.1 * q / MAX_Q))

    guided, plain = Counting(refined), Counting(refined)
    result = search_quality(guided, target, estimate=linear)
    assert (1 - TOLERANCE) * target <= len(result.data) <= target, (target, len(result.data))
    assert len(result.data) == refined(result.quality_q16)
    unguided = search_quality(plain, target)
    assert (1 - TOLERANCE) * target <= len(unguided.data) <= target
    assert guided.calls <= 3, guided.calls
    assert plain.calls >= 5, plain.calls


@pytest.mark.parametrize("target", [250, 1000, 4000, 9000])
def test_misleading_estimate_still_finds_the_target(target):
    # An estimate off by a factor that swings from 0.5 to 2 across the range: the guided tries
    # miss, bisection inside the bracket finishes the job.
    def estimate(q: int) -> int:
        return int(linear(q) * (0.5 + 1.5 * (q / MAX_Q) ** 3))

    exact = Counting(lambda q: int(200 * math.exp(4 * q / MAX_Q)))
    result = search_quality(exact, target, estimate=estimate)
    assert (1 - TOLERANCE) * target <= len(result.data) <= target, (target, len(result.data))
    assert exact.calls <= 18


def test_estimate_respects_unreachable_targets():
    refined = Counting(lambda q: int(linear(q) * 0.9))
    top = search_quality(refined, 100_000, estimate=linear)
    assert top.quality_q16 == MAX_Q and not top.reached
    bottom = search_quality(Counting(lambda q: int(linear(q) * 0.9)), 10, estimate=linear)
    assert bottom.quality_q16 == 0 and len(bottom.data) == 90 and not bottom.reached


def test_invalid_target():
    for target in (0, -5):
        with pytest.raises(ValueError):
            search_quality(Counting(linear), target)


@pytest.mark.parametrize("text,expected", [
    ("40KB", 40_000), ("40kb", 40_000), ("40k", 40_000), ("1.5MiB", 1_572_864), ("2MB", 2_000_000),
    ("1200", 1200), (" 3 KiB ", 3072), ("1.5", 1), ("12B", 12), ("2GB", 2 * 10**9), ("1GiB", 2**30),
    ("9" * 400, sys.maxsize),  # past the float range: the top quality, not an OverflowError
])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "40 TB", "-3KB", "1.2.3", "KB", "0", "0.5", "0KB"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError):
        parse_size(text)


@pytest.fixture(scope="module")
def kodim23_range(shipped_kodim23):
    return len(shipped_kodim23[0.0]), len(shipped_kodim23[1.0])


def test_shipped_target_size(kodim23, kodim23_range):
    low, high = kodim23_range
    target = int(math.sqrt(low * high))
    data = edgecodec.compress(kodim23, model=SHIPPED, target_size=target)
    assert abs(len(data) - target) <= TOLERANCE * target, (target, len(data))
    assert 0 < edgecodec.read_header(data).quality_q16 < MAX_Q
    as_text = edgecodec.compress(kodim23, model=SHIPPED, target_size=f"{target / 1000}KB")
    assert abs(len(as_text) - target) <= TOLERANCE * target


def test_shipped_target_bpp(kodim23, kodim23_range):
    low, high = kodim23_range
    pixels = 768 * 512
    target_bpp = round((0.3 * low + 0.7 * high) * 8 / pixels, 3)
    data = edgecodec.compress(kodim23, model=SHIPPED, target_bpp=target_bpp)
    bpp = 8 * len(data) / pixels
    assert abs(bpp - target_bpp) <= TOLERANCE * target_bpp, (target_bpp, bpp)


def test_shipped_unreachable_targets(kodim23_rgb, shipped_kodim23):
    crop = kodim23_rgb[:128, :128]
    smallest = edgecodec.compress(crop, model=SHIPPED, quality=0.0)
    largest = edgecodec.compress(crop, model=SHIPPED, quality=1.0)
    assert edgecodec.compress(crop, model=SHIPPED, target_size=len(largest) * 10) == largest
    assert edgecodec.compress(crop, model=SHIPPED, target_size=max(1, len(smallest) // 2)) == smallest


# --- quality targets (PSNR, MS-SSIM): search_score -------------------------------------------------
def quality_bytes(q: int) -> bytes:
    return q.to_bytes(2, "little")  # the synthetic "file" is its quality


def score_of(curve):
    calls = []

    def score(data: bytes) -> float:
        calls.append(data)
        return curve(int.from_bytes(data, "little"))
    return score, calls


@pytest.mark.parametrize("target", [20.5, 25.0, 31.7, 39.9])
def test_score_search_finds_the_lowest_quality_that_meets_the_target(target):
    curve = lambda q: 20 + 20 * math.sqrt(q / MAX_Q)  # noqa: E731 (PSNR-like: steep at the low end)
    score, calls = score_of(curve)
    result = search_score(quality_bytes, score, target)
    assert result.reached and result.score == curve(result.quality_q16) >= target
    assert curve(max(0, result.quality_q16 - SCORE_RESOLUTION)) < target  # one step lower misses it
    assert result.data == quality_bytes(result.quality_q16)
    assert len(calls) <= 2 + math.ceil(math.log2(MAX_Q / SCORE_RESOLUTION))


def test_score_search_ends_of_the_range():
    curve = lambda q: 30 + q / MAX_Q  # noqa: E731
    score, calls = score_of(curve)
    top = search_score(quality_bytes, score, 35.0)
    assert (top.quality_q16, top.reached, len(calls)) == (MAX_Q, False, 1)  # unreachable: the best, tried once
    assert top.score == pytest.approx(31.0)
    bottom = search_score(quality_bytes, score_of(curve)[0], 29.0)
    assert (bottom.quality_q16, bottom.reached) == (0, True)


def test_score_search_returns_a_file_that_meets_the_target_on_a_bumpy_curve():
    rng = np.random.default_rng(0)
    bumps = rng.normal(0, 0.3, MAX_Q + 1)
    curve = lambda q: 20 + 15 * q / MAX_Q + bumps[q]  # noqa: E731 (not monotonic)
    for target in (22.0, 27.5, 33.0):
        result = search_score(quality_bytes, score_of(curve)[0], target)
        assert result.reached and curve(result.quality_q16) >= target


def test_shipped_target_psnr_and_ms_ssim(kodim23_rgb):
    from edgecodec.metrics import ms_ssim, psnr

    image = kodim23_rgb[160:352, 256:512]
    ends = [decode_array(edgecodec.compress(image, model=SHIPPED, quality=q))[0] for q in (0.0, 1.0)]
    for name, metric in (("target_psnr", psnr), ("target_ms_ssim", ms_ssim)):
        target = round(float(np.mean([metric(image, decoded) for decoded in ends])), 4)  # mid-range
        data = edgecodec.compress(image, model=SHIPPED, **{name: target})
        q = edgecodec.read_header(data).quality_q16
        assert metric(image, decode_array(data)[0]) >= target
        assert 0 < q < MAX_Q
        lower = edgecodec.compress(image, model=SHIPPED, quality=(q - SCORE_RESOLUTION) / MAX_Q)
        assert metric(image, decode_array(lower)[0]) < target  # and not much more than needed
        assert len(lower) < len(data)


def test_quality_target_arguments(kodim23_rgb):
    image = kodim23_rgb[:64, :96]
    for kwargs, error, message in ((dict(target_psnr=30, target_size=1000), ValueError, "not several"),
                                   (dict(target_psnr=-1), ValueError, "positive"),
                                   (dict(target_psnr=math.inf), ValueError, "positive"),
                                   (dict(target_ms_ssim=1.5), ValueError, r"\(0, 1\]"),
                                   (dict(target_psnr="30"), TypeError, "number")):
        with pytest.raises(error, match=message):
            edgecodec.compress(image, model="tiny", **kwargs)
    from edgecodec.errors import InputImageError
    with pytest.raises(InputImageError, match="at least 161 pixels"):
        edgecodec.compress(image, model="tiny", target_ms_ssim=0.9)
