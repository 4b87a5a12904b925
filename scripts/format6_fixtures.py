"""Write tests/data/format6's files again after a shipped model's weights change (test_roi.py).

Version-6 files are bound to the weights that wrote them, and no current code writes version 6, so
the code of commit 9950a5f (the last to write it) writes them, with the new weights, and decodes
them for what the test compares against (``FORMAT6_DECODED`` in tests/test_roi.py): the digest
of the latents they decode to (``decode_with_latent_digest``) and the PSNR of the pixels against
kodim23's crop:

    git worktree add /tmp/wt9950 9950a5f
    EDGECODEC_MODEL_PATH=FOLDER_WITH_NEW_WEIGHTS PYTHONPATH=/tmp/wt9950 \\
        .venv/bin/python scripts/format6_fixtures.py tests/data/format6 [--models fidelity]

It prints each file's version, size, latent digest and PSNR. With the weights the fixtures were
made with, it writes them again byte for byte.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CROP = (slice(100, 356), slice(200, 584))  # of kodim23


def decode_with_latent_digest(data: bytes) -> tuple[np.ndarray, str]:
    """A file's decoded pixels, and the SHA-256 of what its y streams decode to before y's gains:
    each stream's integer symbols plus its means (fixed point, multiples of 2^-12), in float32, so
    exact. Unlike the pixels (the float synthesis gave others on a CPU with AVX2 and without
    AVX-512), the digest is the same on every CPU; the test and this script compute it with the
    same code (``ExactEntropyModel.dequantize`` is unchanged since 9950a5f)."""
    from edgecodec.codec import api
    from edgecodec.lite.entropy import ExactEntropyModel

    digest, dequantize = hashlib.sha256(), ExactEntropyModel.dequantize

    def spy(self, symbols: np.ndarray, means: np.ndarray | None, quality):
        digest.update((symbols.astype(np.float32) + (0 if means is None else means)).tobytes())
        return dequantize(self, symbols, means, quality)

    ExactEntropyModel.dequantize = spy
    try:
        pixels, _ = api.decode_array(data)
    finally:
        ExactEntropyModel.dequantize = dequantize
    return pixels, digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder for MODEL-whole.edc and MODEL-tiled.edc")
    parser.add_argument("--models", default="fidelity", help="comma-separated (the tests keep fidelity's "
                                                            "whole and tiled files and perceptual's whole one)")
    parser.add_argument("--kodak", default=os.environ.get("EDGECODEC_DATA", str(REPO.parent / "shared/data"))
                        + "/kodak")
    args = parser.parse_args()
    if not Path(args.out).is_dir():
        parser.error(f"{args.out}: no such folder")
    if not (Path(args.kodak) / "kodim23.png").is_file():
        parser.error(f"{args.kodak}: no kodim23.png there (--kodak)")

    import edgecodec
    from edgecodec.codec import api
    from edgecodec.metrics import psnr

    if Path(edgecodec.__file__).resolve().is_relative_to(REPO):  # today's code writes version 7, not 6
        raise SystemExit(f"edgecodec comes from {edgecodec.__file__}: run with PYTHONPATH at a 9950a5f worktree")
    rgb = np.asarray(Image.open(Path(args.kodak) / "kodim23.png").convert("RGB"))
    rgb = np.ascontiguousarray(rgb[CROP])
    roi = [(150, 60, 48, 48), (30, 150, 100, 70)]
    for model in args.models.split(","):
        files = {f"{model}-whole.edc": edgecodec.compress(rgb, quality=0.2, model=model, roi=roi, roi_quality=0.8),
                 f"{model}-tiled.edc": api.Encoder(api.load_image(rgb), model, tile=16, roi=roi, roi_quality=0.8)
                 .encode(api.quality_to_q16(0.2))}
        for name, data in files.items():
            (Path(args.out) / name).write_bytes(data)
            pixels, digest = decode_with_latent_digest(data)
            print(name, f"version {data[4]}", f"{len(data)} bytes", digest, f"{psnr(rgb, pixels):.4f} dB")


if __name__ == "__main__":
    main()
