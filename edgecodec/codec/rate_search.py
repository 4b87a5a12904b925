"""Find the quality that meets a target size: bisection over the 16-bit quality grid."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .container import QUALITY_SCALE

TOLERANCE = 0.03


@dataclass(frozen=True)
class SearchResult:
    quality_q16: int
    data: bytes
    target_bytes: int

    @property
    def reached(self) -> bool:
        """Whether the size is within the tolerance of the target."""
        return abs(len(self.data) - self.target_bytes) <= TOLERANCE * self.target_bytes


def search_quality(encode: Callable[[int], bytes], target_bytes: int, max_iter: int = 16) -> SearchResult:
    """The highest quality whose stream fits in target_bytes, or the closest stream within
    TOLERANCE above it when none below lands within TOLERANCE. Size grows with quality
    (gains increase monotonically by construction of the training), so bisection applies."""
    if target_bytes <= 0:
        raise ValueError("target size must be positive")
    lo, hi = 0, QUALITY_SCALE
    tried: dict[int, bytes] = {}

    def size(q: int) -> int:
        if q not in tried:
            tried[q] = encode(q)
        return len(tried[q])

    if size(hi) <= target_bytes:
        return SearchResult(hi, tried[hi], target_bytes)
    if size(lo) >= target_bytes:
        return SearchResult(lo, tried[lo], target_bytes)
    for _ in range(max_iter):
        if hi - lo <= 1:
            break
        mid = (lo + hi) // 2
        if size(mid) <= target_bytes:
            lo = mid
            if size(mid) >= (1 - TOLERANCE) * target_bytes:
                break
        else:
            hi = mid
    below = SearchResult(lo, tried[lo], target_bytes)
    above = SearchResult(hi, tried[hi], target_bytes)
    if not below.reached and above.reached:
        return above
    return below
