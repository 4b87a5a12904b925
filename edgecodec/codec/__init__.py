"""The codec: container format, input handling, rate search and the compress/decompress API."""

from .api import compress, decode_array, decompress, parse_size, read_header
from .container import FORMAT_VERSION, Container, Header

__all__ = ["FORMAT_VERSION", "Container", "Header", "compress", "decode_array", "decompress", "parse_size",
           "read_header"]
