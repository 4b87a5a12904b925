"""Where edgecodec keeps files of its own: the XDG base folders that the user model folder
(zoo.py) and the ONNX export cache (export/onnx.py) live under. Torch-free, as the lite coders
and light tools may use it."""

from __future__ import annotations

import os
from pathlib import Path


def xdg_dir(variable: str, default: Path) -> Path:
    """An XDG base folder: the variable's value when it is an absolute path (the XDG spec: an
    empty or relative one is ignored, so a stray value never points into the working folder)."""
    value = os.environ.get(variable, "")
    return Path(value) if os.path.isabs(value) else default
