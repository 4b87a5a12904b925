"""CompressAI's rANS decoder without PyTorch, and the stream padding that keeps it in bounds.

The only decoder guaranteed to read CompressAI's rANS streams bit for bit is CompressAI's own
(``compressai.ans``, a small pybind11 extension over ryg_rans that links only libstdc++). Importing
it the normal way runs ``compressai/__init__.py``, which imports torch, so we load the extension
file directly. A device then needs the CompressAI wheel installed with ``--no-deps`` (450 kB), not
torch. Other coders (constriction, etc.) use different stream layouts and could not read .edc files.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from ..errors import FormatError

# Stream sanity bounds (see pad_stream).
MAX_BYTES_PER_SYMBOL = 8
BYPASS_STATE_MARGIN = 64 * 1024  # zero padding for bypass runs fed by the decoder state alone


def load_ans() -> ModuleType:
    """The ``compressai.ans`` extension module, imported without importing torch."""
    module = sys.modules.get("compressai.ans")
    if module is not None:
        return module
    spec = importlib.util.find_spec("compressai")  # locates the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the lite decoder needs CompressAI's rANS extension: "
                          "pip install --no-deps compressai==1.2.8")
    for folder in spec.submodule_search_locations:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = Path(folder) / f"ans{suffix}"
            if path.is_file():
                ext_spec = importlib.util.spec_from_file_location("compressai.ans", path)
                module = importlib.util.module_from_spec(ext_spec)
                ext_spec.loader.exec_module(module)
                # Registered under its real name, so a later `import compressai` reuses it
                # (pybind11 refuses to register the same classes twice).
                sys.modules["compressai.ans"] = module
                return module
    raise ImportError(f"CompressAI's rANS extension (ans{importlib.machinery.EXTENSION_SUFFIXES[0]}) is "
                      "missing from the installed compressai package")


def pad_stream(s: bytes, symbols: int) -> bytes:
    """Check a stream's length against its symbol count, then append enough zero bytes that the
    rANS decoder never reads past the buffer.

    CompressAI's C++ rANS decoder reads 32-bit words without bounds checks. Outside its bypass
    mode it reads at most one word per symbol (4 bytes a symbol). In bypass mode it first reads
    4-bit chunks while they equal 15, adding them up into ``n_bypass``, then reads ``n_bypass``
    more 4-bit chunks: every 0xF nibble the stream contains can make it read up to 15 nibbles
    (7.5 bytes) further, so a stream of 0xFF bytes used to run megabytes past its end and crash
    the process (found by benchmarks/fuzz.py). Zero padding ends every such chain, so the
    over-read is bounded by 8 bytes per 0xF nibble in the stream, plus the 64-bit decoder state
    (at most 16 nibbles of 15, i.e. 120 bytes a bypass symbol; a long bypass read of zeros drives
    the state to 0, where it stays). Our encoder writes at most 7 bytes per symbol (16 bits, or
    16 + 10 four-bit bypass chunks for any int32), so a longer stream is malformed; the length
    check also bounds the padding's memory.
    """
    if len(s) > MAX_BYTES_PER_SYMBOL * symbols + 64:
        raise FormatError(f"corrupted .edc file: a stream of {len(s)} bytes for {symbols} symbols "
                          f"(at most {MAX_BYTES_PER_SYMBOL} bytes a symbol)")
    b = np.frombuffer(s, dtype=np.uint8)
    nibbles_15 = int(np.count_nonzero((b & 0x0F) == 0x0F) + np.count_nonzero(b >= 0xF0))
    return s + bytes(4 * symbols + 8 * nibbles_15 + BYPASS_STATE_MARGIN)


MAX_SYMBOL_MAGNITUDE = 2**24  # far beyond any latent of an image in [0, 1]


@dataclass(frozen=True)
class CdfTable:
    """One CompressAI entropy model's rANS tables (``_quantized_cdf``, ``_cdf_length``, ``_offset``)."""

    quantized_cdf: np.ndarray  # (tables, max length) int32
    cdf_length: np.ndarray  # (tables,) int32
    offset: np.ndarray  # (tables,) int32

    def __post_init__(self) -> None:
        # The C++ decoder takes Python lists; converting once per model instead of per call.
        object.__setattr__(self, "_lists", (self.quantized_cdf.tolist(), self.cdf_length.reshape(-1).tolist(),
                                            self.offset.reshape(-1).tolist()))

    def encode(self, symbols: np.ndarray, indexes: np.ndarray) -> bytes:
        """One stream of ``symbols`` (integers, as CompressAI's entropy models quantize them), each
        coded with table ``indexes[i]``: what ``decode`` reads back (the lite encoder's coder)."""
        # CompressAI's coder never returns for a symbol near the int32 limits (what NaN or an
        # overflowing latent becomes), so such latents are refused here.
        if symbols.size and not -MAX_SYMBOL_MAGNITUDE < symbols.min() <= symbols.max() < MAX_SYMBOL_MAGNITUDE:
            raise ValueError("latent values are NaN or too large to entropy-code (is the input in [0, 1]?)")
        cdfs, lengths, offsets = self._lists
        return load_ans().RansEncoder().encode_with_indexes(
            symbols.reshape(-1).astype(np.int32).tolist(), indexes.reshape(-1).astype(np.int32).tolist(),
            cdfs, lengths, offsets)

    def decode(self, stream: bytes, indexes: np.ndarray) -> np.ndarray:
        """Symbols (int32, shaped like ``indexes``) of one stream; each symbol uses table ``indexes[i]``."""
        if indexes.size and (indexes.min() < 0 or indexes.max() >= len(self.cdf_length)):
            raise ValueError("table index out of range")
        cdfs, lengths, offsets = self._lists
        values = load_ans().RansDecoder().decode_with_indexes(
            pad_stream(stream, indexes.size), indexes.reshape(-1).astype(np.int32).tolist(), cdfs, lengths, offsets)
        return np.asarray(values, dtype=np.int32).reshape(indexes.shape)
