"""The training photos cut down to fit a device-tool call (64 MiB with the working tree): each
photo downscaled 0.7x (Lanczos, which also removes most of the q75 JPEG blocking) and re-encoded as
JPEG q90 4:2:0, in an order fixed by a hash of its name, until the size budget (MB) is used.

    python scripts/gpu/prepare_data.py 30 [SRC] [DST]

Runs on the subset take ``data.scale=[0.714,1.0]``, so their crops see the originals at 0.5-0.7x,
inside the CPU runs' 0.5-1.0x. File names are kept, so the held-out split (by name) is the usual one."""

from __future__ import annotations

import hashlib
import io
import sys
from pathlib import Path

from PIL import Image, ImageOps

SCALE, QUALITY, MIN_SIDE = 0.7, 90, 256


def main(budget_mb: float, src: Path, dst: Path) -> None:
    files = sorted((p for p in src.rglob("*") if p.is_file()),
                   key=lambda p: hashlib.sha1(p.name.encode()).hexdigest()[::-1])
    total = kept = 0
    for path in files:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img).convert("RGB")
        small = img.resize((round(img.width * SCALE), round(img.height * SCALE)), Image.Resampling.LANCZOS)
        if min(small.size) < MIN_SIDE:
            continue
        buf = io.BytesIO()
        small.save(buf, "JPEG", quality=QUALITY, subsampling=2)
        if total + buf.tell() > budget_mb * 1e6:
            break
        out = dst / path.parent.name / (path.stem + ".jpg")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(buf.getvalue())
        total += buf.tell()
        kept += 1
    print(f"{kept} of {len(files)} images, {total / 1e6:.1f} MB in {dst}")


if __name__ == "__main__":
    try:
        megabytes = float(sys.argv[1])
    except (IndexError, ValueError):
        sys.exit("usage: python scripts/gpu/prepare_data.py MB [SOURCE (../shared/data/train)] [DEST (.gpu/data)]")
    main(megabytes, Path(sys.argv[2] if len(sys.argv) > 2 else "../shared/data/train"),
         Path(sys.argv[3] if len(sys.argv) > 3 else ".gpu/data"))
