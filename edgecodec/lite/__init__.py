"""The torch-free core: entropy coding of format-3 streams, and a decoder and an encoder for
exported models.

``decode`` returns the picture as RGB, or RGBA when the file kept the source's alpha (format 4,
``alpha.py``); a kept EXIF block and XMP packet are in ``Container.from_bytes(data).extras``.

Imports only numpy, safetensors (numpy API), onnxruntime (on first decoder or encoder use) and
CompressAI's rANS extension (loaded without torch). The PyTorch codec uses ``entropy``, ``hyper``,
``rans`` and ``tiles`` too, so both backends share one entropy-coding path.

    from edgecodec.lite import LiteDecoder, LiteEncoder
    rgb, header = LiteDecoder("exported/perceptual", threads=2).decode(open("photo.edc", "rb").read())
    data = LiteEncoder("exported/perceptual", threads=2).encode(rgb_uint8_array, quality=0.5)
"""

from .decoder import LiteDecoder
from .encoder import LiteEncoder

__all__ = ["LiteDecoder", "LiteEncoder"]
