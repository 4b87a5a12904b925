"""onnxruntime, imported with its usage telemetry off."""

from __future__ import annotations

import os
from types import ModuleType


def import_onnxruntime() -> ModuleType:
    """``import onnxruntime`` after setting ``ORT_DISABLE_TELEMETRY=1`` unless the user set it.

    Since 1.29, onnxruntime's Linux and macOS wheels create a device id and an event database under
    ~/.cache/Microsoft/DeveloperTools and upload usage events to Microsoft by default; a codec that
    runs locally (and on devices) keeps that off. The variable is read when onnxruntime creates its
    environment (the first session), so setting it here, before any session, is enough.
    """
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime

    return onnxruntime
