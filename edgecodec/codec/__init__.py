"""The codec: container format, input handling, rate search and the compress/decompress API."""

from .container import FORMAT_VERSION, Container, Header

__all__ = ["FORMAT_VERSION", "Container", "Header", "compress", "decode_array", "decompress", "parse_size",
           "read_header"]


def __getattr__(name: str):
    # The API imports torch; the container (used by the Pillow plugin to read headers) does not.
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
