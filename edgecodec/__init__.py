"""edgecodec: a learned image codec with real bitstreams.

    import edgecodec
    data = edgecodec.compress("photo.png", quality=0.6)
    image = edgecodec.decompress(data)
"""

import warnings

# CompressAI 1.2.8 calls torch.jit.script at import, which torch 2.14 deprecates: noise for users.
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated", category=FutureWarning)

__version__ = "0.1.0"
__all__ = ["EdgecodecError", "__version__", "compress", "decompress", "read_header"]

# The Pillow plugin ("EDC" format, .edc): registering imports only Pillow; the codec loads on use.
# Devices running only the torch-free decoder (edgecodec.lite) may not have Pillow.
import importlib.util  # noqa: E402

# A device may also carry only the files the lite decoder needs (README, On the edge): no plugin then.
if importlib.util.find_spec("PIL") is not None and importlib.util.find_spec(f"{__name__}.pillow") is not None:
    from . import pillow as _pillow  # noqa: F401

_LAZY = {"compress": "codec", "decompress": "codec", "read_header": "codec", "EdgecodecError": "errors"}


def _absent(module: str | None) -> bool:
    """Whether ``module`` cannot be found at all (not installed, or not copied to the device)."""
    try:
        return module is not None and importlib.util.find_spec(module) is None
    except (ImportError, ValueError):  # a parent package missing too
        return True


def __getattr__(name: str):
    # Imported on first use, so `edgecodec --help` and light tools don't pay for torch.
    if name in _LAZY:
        import importlib

        try:
            return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        except ImportError as exc:
            # A device set up for the torch-free coders (README, On the edge; the package without torch
            # or Pillow, or a copy of only the lite files) got a bare "No module named 'torch'".
            # torch or Pillow only when not installed: a broken torch ("cannot import name X from
            # torch") keeps its own error; edgecodec's modules when the copy lacks them (a lite copy).
            if not ((exc.name in ("torch", "PIL") and _absent(exc.name))
                    or (exc.name or "").startswith(f"{__name__}.")):
                raise
            raise type(exc)(f"edgecodec.{name} is the PyTorch codec ({exc}); without PyTorch and Pillow, code "
                            "with edgecodec.lite's LiteEncoder and LiteDecoder and an export made by `edgecodec "
                            "export onnx` (README, On the edge)", name=exc.name) from exc
    raise AttributeError(f"module 'edgecodec' has no attribute {name!r}")
