"""edgecodec: a learned image codec with real bitstreams.

    import edgecodec
    data = edgecodec.compress("photo.png", quality=0.6)
    image = edgecodec.decompress(data)
"""

import warnings

# CompressAI 1.2.8 calls torch.jit.script at import, which torch 2.14 deprecates: noise for users.
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated", category=FutureWarning)

from .codec import compress, decompress, read_header
from .errors import EdgecodecError

__version__ = "0.1.0"
__all__ = ["EdgecodecError", "__version__", "compress", "decompress", "read_header"]
