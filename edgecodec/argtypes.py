"""argparse types shared by the command modules (cli.py, eval/command.py, web/command.py): a bad
value becomes argparse's usage error naming the option, before any work is done."""

from __future__ import annotations

import argparse
import math
from typing import Callable


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An integer of at least ``minimum``."""
    def parse(text: str) -> int:
        value = int(text)  # argparse turns the ValueError into a usage error
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more, got {value}")
        return value

    parse.__name__ = "int"  # argparse names the type in "invalid int value: 'x'"
    return parse


def finite_number(text: str) -> float:
    """A number that is not NaN or infinite."""
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def positive_number(text: str) -> float:
    """A finite number above 0 (bits per pixel, megabytes)."""
    value = finite_number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def fraction(text: str) -> float:
    """A number above 0 and at most 1 (an MS-SSIM)."""
    value = finite_number(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 1, got {text}")
    return value


def unit_interval(text: str) -> float:
    """A number from 0 to 1 (a quality)."""
    value = finite_number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def names(text: str) -> list[str]:
    """Comma-separated names; "" or "none" for none."""
    if text.strip().lower() in ("", "none"):
        return []
    return [t.strip() for t in text.split(",") if t.strip()]


def numbers(text: str) -> list[float]:
    """Comma-separated finite numbers."""
    try:
        values = [float(t) for t in names(text)]
    except ValueError:
        values = [math.nan]
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")
    return values


def path_name(text: str) -> str:
    """A file or folder name that is not empty. An empty one (`"$IN"` with IN unset) is the current
    folder to pathlib: compress "" -o out coded every image under it, and an empty -o fell back to
    the default output, both in silence."""
    if not text:
        raise argparse.ArgumentTypeError('is empty: give a file or folder name ("-" for standard input or output)')
    return text


def region(text: str) -> tuple[int, int, int, int]:
    """LEFT,TOP,WIDTH,HEIGHT in pixels: a part of an image (whether it lies within the image is
    checked against the file)."""
    try:
        values = tuple(int(t) for t in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or min(values[:2]) < 0 or min(values[2:]) < 1:
        raise argparse.ArgumentTypeError(f"expected LEFT,TOP,WIDTH,HEIGHT (whole pixels; left and top 0 or more, "
                                         f"width and height 1 or more), got {text!r}")
    return values  # type: ignore[return-value]


for _type in (finite_number, positive_number, fraction, unit_interval, numbers):
    _type.__name__ = "number"  # argparse names the type in "invalid number value: 'x'"
