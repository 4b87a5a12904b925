"""What every benchmark records about the machine, and how it writes its results file."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any, Callable


# instruction sets that change onnxruntime's and PyTorch's CPU kernels (VNNI: the int8 convolutions)
SPEED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "amx_tile")


def _cpuinfo() -> dict[str, Any]:
    """Model name, clock and speed-relevant flags of the first CPU in /proc/cpuinfo (Linux; {} elsewhere).
    The development VMs differ between sessions (the same benchmark has run twice as fast on one
    as on another), so a figure is only comparable with the CPU it was measured on."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    flags = set(fields.get("flags", "").split())
    info: dict[str, Any] = {"cpu_model": fields.get("model name"),
                            "cpu_flags": [f for f in SPEED_FLAGS if f in flags]}
    if "cpu MHz" in fields:
        info["cpu_mhz"] = round(float(fields["cpu MHz"]))
    return info


def machine() -> dict[str, Any]:
    """Python version, CPU (model, clock, vector flags) and core count: the context a benchmark figure needs."""
    return {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), **_cpuinfo()}


def whole_numbers(minimum: int) -> Callable[[str], list[int]]:
    """An argparse type: comma-separated whole numbers, each at least ``minimum`` ("" for none)."""
    from edgecodec.argtypes import numbers

    def parse(text: str) -> list[int]:
        values = numbers(text)
        if any(v != int(v) or v < minimum for v in values):
            raise argparse.ArgumentTypeError(f"expected whole numbers from {minimum}, got {text!r}")
        return [int(v) for v in values]

    return parse


def thread_counts(text: str) -> list[int]:
    """An argparse type: comma-separated thread counts, each 1 or more, at least one (none measured
    nothing and wrote an empty results file), each once in the order given (a repeated count was
    timed twice, two rows of one setting)."""
    counts = whole_numbers(1)(text)
    if not counts:
        raise argparse.ArgumentTypeError("expected at least one thread count")
    return list(dict.fromkeys(counts))


def quality_list(text: str) -> list[float]:
    """An argparse type: comma-separated qualities, each from 0 to 1, at least one."""
    from edgecodec.argtypes import numbers

    values = numbers(text)
    if not values or any(not 0 <= v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated qualities from 0 to 1, got {text!r}")
    return values


def run_main(main: Callable[[], int | None]) -> None:
    """Run a benchmark's ``main`` and exit with its code; a value the codec refuses as a usage error
    (an unknown model, a bad setting, an unreadable image) or a missing input is one line and exit 2, as argparse does
    for a bad option. Anything else keeps its traceback."""
    from edgecodec.errors import InputImageError, UnknownModelError, UsageError

    try:
        code = main()
    except (UsageError, UnknownModelError, InputImageError, FileNotFoundError) as exc:  # not a damaged stream
        print(f"{Path(sys.argv[0]).name}: error: {exc}", file=sys.stderr)
        code = 2
    sys.exit(code or 0)


def write_results(path: str | Path, result: dict[str, Any]) -> Path:
    """Write ``result`` as indented JSON to ``path`` (parents created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    return path
