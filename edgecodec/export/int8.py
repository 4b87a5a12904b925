"""int8 synthesis: onnxruntime's static quantization (QDQ) of ``decoder.onnx``.

Activations are calibrated on latents of real images (never Kodak, the evaluation set) at
several qualities; weights are quantized per channel. The lite decoder uses the result only when
asked (``--int8``); benchmarks/edge.py measures its quality drop and speed against fp32.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..codec.api import _to_tensor
from ..codec.imageio import load_image
from ..models import EdgeCodecModel

CALIBRATION_QUALITIES = (0.0, 0.5, 1.0)
CALIBRATION_CROP = 256


def calibration_latents(model: EdgeCodecModel, images: list[Path], limit: int = 8) -> list[np.ndarray]:
    """y_hat of centre crops of ``limit`` images spread over the list, at CALIBRATION_QUALITIES, as the
    decoder sees them. Images smaller than one stride are passed over; ValueError if all are."""
    latents = []
    spread = images[:: max(1, len(images) // limit)]
    used = 0
    for path in [*spread, *(p for p in images if p not in spread)]:  # the spread first, others for small ones
        if used == limit:
            break
        rgb = load_image(path).rgb
        if min(rgb.shape[:2]) < model.stride:  # a crop of whole latent pixels needs one stride at least
            continue
        used += 1
        h, w = rgb.shape[:2]
        c = min(CALIBRATION_CROP, h - h % model.stride, w - w % model.stride)
        top, left = (h - c) // 2, (w - c) // 2
        y = model.analyze(_to_tensor(rgb[top: top + c, left: left + c], model.stride))
        for q in CALIBRATION_QUALITIES:
            # The decoder's input: the y_hat that the format-3 entropy decoding reproduces.
            strings = model.compress_latent(y, q)["strings"]
            latents.append(model.exact_entropy().decode(strings, tuple(y.shape[-2:]), q)[None])
    if not latents:
        raise ValueError(f"--int8: none of the {len(images)} calibration image(s) is at least "
                         f"{model.stride}x{model.stride} pixels: give photos (training images, not the evaluation set)")
    return latents


def quantize_synthesis(fp32_path: Path, out_path: Path, latents: list[np.ndarray]) -> None:
    from ..lite.runtime import import_onnxruntime

    import_onnxruntime()  # telemetry off before quantize_static's calibration sessions (it wrote ~/.cache/Microsoft)
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._items = iter([{"y_hat": y} for y in latents])

        def get_next(self):
            return next(self._items, None)

    # quantize_static logs advice ("Please consider to run pre-processing...") through the root
    # logger, which a command line prints as WARNING:root lines: silenced while it runs.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_static(str(fp32_path), str(out_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
