"""The torch-free core: entropy decoding of format-3 streams and a decoder for exported models.

``decode`` returns the coded RGB picture. A format-4 file's extras (a kept alpha plane, EXIF,
XMP: docs/format.md) are in ``Container.from_bytes(data).extras``; the alpha plane of a
non-opaque image is a PNG, which ``edgecodec.codec.extras.decoded_image`` attaches with Pillow.

Imports only numpy, safetensors (numpy API), onnxruntime (on first decoder use) and CompressAI's
rANS extension (loaded without torch). The PyTorch codec uses ``entropy``, ``hyper``, ``rans`` and
``tiles`` too, so both backends share one entropy-decoding path.

    from edgecodec.lite import LiteDecoder
    rgb, header = LiteDecoder("exported/perceptual", threads=2).decode(open("photo.edc", "rb").read())
"""

from .decoder import LiteDecoder

__all__ = ["LiteDecoder"]
