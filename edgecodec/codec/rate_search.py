"""Find the quality that meets a target: a file size, or a quality score of the decoded image (PSNR,
MS-SSIM); searches over the 16-bit quality grid."""

from __future__ import annotations

import math
import numbers
import re
import sys
from dataclasses import dataclass
from typing import Callable

from ..errors import UsageError
from .container import QUALITY_SCALE

TOLERANCE = 0.03
GUIDED_TRIES = 4  # tries led by the estimate before plain bisection takes over
# A score search stops when the qualities that miss and meet the target are this close (1/256 of
# the range: about 10 encodes and decodes; a step of 1/256 changes a shipped model's file by about
# 1%, its rate spanning 15 to 20 times from quality 0 to 1).
SCORE_RESOLUTION = 256


def parse_size(text: str) -> int:
    """'40KB' -> 40000, '1.5MiB' -> 1572864, '2GB' -> 2000000000, '1200' -> 1200 bytes."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgG]i?)?[bB]?\s*", text)
    if not match:
        raise UsageError(f"cannot parse size {text!r}: use e.g. 40KB, 1.5MB, 2MiB or 1200")
    number, unit = float(match.group(1)), (match.group(2) or "").lower()
    scale = {"": 1, "k": 1000, "ki": 1024, "m": 1000**2, "mi": 1024**2, "g": 1000**3, "gi": 1024**3}[unit]
    size = number * scale
    if size < 1:
        raise UsageError(f"size {text!r} is under one byte")
    # Hundreds of digits overflow the float to inf (int() would raise OverflowError): any size
    # above every file's only asks for the top quality, as for size_to_bytes and bpp_to_bytes.
    return int(min(size, sys.maxsize))


def size_to_bytes(size: int | float | str) -> int:
    """A target size in bytes given as a number of bytes or as text such as '40KB' (``parse_size``)."""
    if isinstance(size, str):
        return parse_size(size)
    if isinstance(size, bool) or not isinstance(size, numbers.Real):
        raise TypeError(f"target size must be a number of bytes or a size such as '40KB', not {type(size).__name__}")
    if not math.isfinite(size):  # int() raises OverflowError
        raise UsageError(f"target size must be a finite number of bytes, not {size}")
    return int(size)


def bpp_to_bytes(bpp: float, pixels: int) -> int:
    """The target size in bytes of ``bpp`` bits per pixel for an image of ``pixels`` pixels."""
    if isinstance(bpp, bool) or not isinstance(bpp, numbers.Real):
        raise TypeError(f"target bpp must be a number, not {type(bpp).__name__}")
    if not (math.isfinite(bpp) and bpp > 0):
        raise UsageError(f"target bpp must be a positive number, not {bpp}")
    size = bpp * pixels / 8
    if size < 1:
        raise UsageError(f"target {bpp:g} bpp is under one byte for an image of {pixels} pixels")
    # A bpp near the float maximum overflows to inf here (int() would raise OverflowError): any
    # size above every file's only asks for the top quality, as 1e300 bpp does.
    return int(min(size, sys.maxsize))


@dataclass(frozen=True)
class SearchResult:
    quality_q16: int
    data: bytes
    target_bytes: int

    @property
    def reached(self) -> bool:
        """Whether the size is within the tolerance of the target."""
        return abs(len(self.data) - self.target_bytes) <= TOLERANCE * self.target_bytes


def search_quality(encode: Callable[[int], bytes], target_bytes: int, max_tries: int = 18,
                   estimate: Callable[[int], int] | None = None) -> SearchResult:
    """The highest quality whose stream fits in target_bytes, or the closest stream within
    TOLERANCE above it when none below lands within TOLERANCE. Size grows with quality
    (gains increase monotonically by construction of the training), so bisection applies: the
    top quality first, then the bottom, then the midpoint of the qualities still open.

    ``estimate``: a cheap function of the quality that follows len(encode(q)) up to a slowly
    varying factor, for an ``encode`` that is costly (with encoder refinement, the unrefined
    stream's size). The first GUIDED_TRIES tries then go where the estimate, scaled by the ratio
    measured at the last try, lands in the middle of the tolerance band below the target (a
    secant-like step, so a refined search takes a few refinements instead of one per halving);
    a guess outside the qualities still open, and every later try, bisects."""
    if target_bytes <= 0:
        raise UsageError("target size must be positive")
    tried: dict[int, bytes] = {}
    estimated: dict[int, int] = {}
    fits, over = -1, QUALITY_SCALE + 1  # the highest tried quality that fits, the lowest that does not

    def estimated_size(q: int) -> int:
        if q not in estimated:
            estimated[q] = estimate(q)
        return estimated[q]

    def guided(ratio: float) -> int:
        """The highest quality whose scaled estimate fits the middle of the tolerance band."""
        aim = (1 - TOLERANCE / 2) * target_bytes
        lo, hi = 0, QUALITY_SCALE
        if ratio * estimated_size(lo) > aim:
            return lo
        while hi - lo > 1:  # bisection on the cheap estimate
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if ratio * estimated_size(mid) <= aim else (lo, mid)
        return hi if ratio * estimated_size(hi) <= aim else lo

    ratio = 1.0
    for attempt in range(max_tries):
        if over - fits <= 1:
            break
        q = guided(ratio) if estimate is not None and attempt < GUIDED_TRIES else -1
        if not fits < q < over:  # bisect: the ends first (unless guided), then the midpoint
            if estimate is None and over > QUALITY_SCALE:
                q = QUALITY_SCALE
            elif estimate is None and fits < 0:
                q = 0
            else:
                q = (fits + over) // 2
        tried[q] = encode(q)
        if estimate is not None:
            ratio = len(tried[q]) / max(1, estimated_size(q))
        if len(tried[q]) <= target_bytes:
            fits = q
            if len(tried[q]) >= (1 - TOLERANCE) * target_bytes:
                break
        else:
            over = q
    below = SearchResult(fits, tried[fits], target_bytes) if fits >= 0 else None
    above = SearchResult(over, tried[over], target_bytes) if over <= QUALITY_SCALE else None
    if below is None or (above is not None and not below.reached and above.reached):
        return above
    return below


@dataclass(frozen=True)
class ScoreResult:
    quality_q16: int
    data: bytes
    score: float  # of the image the file decodes to
    target: float

    @property
    def reached(self) -> bool:
        return self.score >= self.target


def search_score(encode: Callable[[int], bytes], score: Callable[[bytes], float], target: float,
                 resolution: int = SCORE_RESOLUTION) -> ScoreResult:
    """The lowest quality whose file scores at least ``target`` (``score`` decodes the file and
    measures it), within ``resolution`` on the quality grid; the top quality when none does. The
    score grows with the quality (more bits, less distortion), so bisection applies: the top
    quality first, then the bottom, then midpoints. Only files that were scored are returned, so
    a reached target holds for the returned file even where the score is not quite monotonic."""
    top = encode(QUALITY_SCALE)
    best = ScoreResult(QUALITY_SCALE, top, score(top), target)
    if not best.reached:
        return best
    misses = -1  # the highest quality tried that misses the target
    while best.quality_q16 - misses > resolution:
        q = 0 if misses < 0 else (misses + best.quality_q16) // 2
        data = encode(q)
        value = score(data)
        if value >= target:
            best = ScoreResult(q, data, value, target)
        else:
            misses = q
    return best
