"""The torch-free core: entropy decoding of format-3 streams and a decoder for exported models.

``decode`` returns the picture as RGB, or RGBA when the file kept the source's alpha (format 4,
``alpha.py``); a kept EXIF block and XMP packet are in ``Container.from_bytes(data).extras``.

Imports only numpy, safetensors (numpy API), onnxruntime (on first decoder use) and CompressAI's
rANS extension (loaded without torch). The PyTorch codec uses ``entropy``, ``hyper``, ``rans`` and
``tiles`` too, so both backends share one entropy-decoding path.

    from edgecodec.lite import LiteDecoder
    rgb, header = LiteDecoder("exported/perceptual", threads=2).decode(open("photo.edc", "rb").read())
"""

from .decoder import LiteDecoder

__all__ = ["LiteDecoder"]
