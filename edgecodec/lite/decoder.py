"""Decode .edc files without PyTorch: numpy, onnxruntime and CompressAI's rANS extension.

A model exported by ``edgecodec export onnx`` is a folder with ``manifest.json``, the synthesis
``decoder.onnx`` (and the encoder-side graphs, which ``LiteEncoder`` runs) and
``tables.safetensors`` (rANS tables, integer hyper-synthesis, gains). Format-3 files decode to
exactly the latents the PyTorch codec decodes (the entropy decoding is the same code,
``lite.entropy``); pixels may differ by one level where onnxruntime's float synthesis rounds
differently from PyTorch's.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..codec.container import ALPHA, WEIGHTS_HASH_BYTES, Container, Header
from ..codec.limits import check_padded_pixels, check_pixels
from ..errors import FormatError, UnknownModelError, WeightsMismatchError
from .alpha import decode_alpha
from .entropy import HYPER_STRIDE, ExactEntropyModel
from .qmap import file_quality, gains_matched
from .tiles import LATENT_STRIDE, Region, check_region, crop_region, latent_span, synthesis_windows

MANIFEST = "manifest.json"
EXPORT_FORMAT = "edgecodec-onnx-1"
TABLES_SOURCE = "source"  # tables.safetensors metadata: JSON {"model", "weights_hash"} of the weights


def _load_tables(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file  # numpy-only API of the safetensors package

    return load_file(str(path))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_export(model_dir: Path, graphs: list[str]) -> tuple[dict, dict[str, np.ndarray]]:
    """An export's manifest and tables, after checking that the tables and ``graphs`` are the files
    its manifest lists (a stranger could have swapped them)."""
    manifest_path = model_dir / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{model_dir} is not an exported model: no {MANIFEST} "
                                "(create one with `edgecodec export onnx --model NAME -o DIR`)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except ValueError as exc:
        raise ValueError(f"{manifest_path} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("export_format") != EXPORT_FORMAT:
        found = manifest.get("export_format") if isinstance(manifest, dict) else type(manifest).__name__
        if found is None:  # another program's manifest.json (a web app's, a model zoo's): "format None" said nothing
            raise ValueError(f"{manifest_path}: unknown export format: it has no 'export_format', so {model_dir} is "
                             "not an edgecodec export (create one with `edgecodec export onnx --model NAME -o DIR`)")
        raise ValueError(f"{manifest_path}: unknown export format {found!r} (this edgecodec reads {EXPORT_FORMAT!r}: "
                         "export the model again with it)")
    problem = _manifest_problem(manifest)
    if problem:
        raise ValueError(f"{manifest_path} is damaged: {problem} (export the model again)")
    for name in ("tables.safetensors", *graphs):
        if name not in manifest["files"]:
            # decoder.int8.onnx: written only by `export onnx --int8`; the bare "has no" said not how to get it
            how = (": it was exported without --int8 (`edgecodec export onnx --model NAME -o DIR --int8 IMAGES` "
                   "adds it; or decode with the fp32 synthesis)" if name == "decoder.int8.onnx" else "")
            raise FileNotFoundError(f"{model_dir} has no {name}{how}")
        if not (model_dir / name).is_file():  # listed but not copied (a decoder-only copy given to the encoder)
            raise FileNotFoundError(f"{model_dir} has no {name}, which its {MANIFEST} lists: copy it from the export")
        if _sha256(model_dir / name) != manifest["files"][name]["sha256"]:
            raise ValueError(f"{model_dir / name} does not match its manifest (damaged or replaced)")
    # The tables name the weights they were made from (exports since 2026-12-06): a manifest edited
    # to claim another model's name and hash otherwise decoded that model's files to noise.
    owner = _tables_owner(model_dir / "tables.safetensors")
    claimed = {"model": manifest["model"], "weights_hash": manifest["weights_hash"]}
    if owner is not None and owner != claimed:
        raise ValueError(f"{model_dir}: its tables are of model {owner['model']!r} (weights {owner['weights_hash']}) "
                         f"but {MANIFEST} says {claimed['model']!r} (weights {claimed['weights_hash']}): "
                         "export the model again")
    return manifest, _load_tables(model_dir / "tables.safetensors")


def _tables_owner(path: Path) -> dict[str, str] | None:
    """The model name and weights hash recorded in an export's tables file; None for exports
    made before they were recorded."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        source = (f.metadata() or {}).get(TABLES_SOURCE)
    if source is None:
        return None
    try:
        owner = json.loads(source)
        return {"model": owner["model"], "weights_hash": owner["weights_hash"]}
    except (ValueError, TypeError, KeyError):
        raise ValueError(f"{path}: its '{TABLES_SOURCE}' metadata is damaged (export the model again)") from None


def _manifest_problem(manifest: dict) -> str | None:
    """What is wrong with the fields the lite coders read, or None (a hand-edited manifest
    otherwise fails later as a KeyError or TypeError deep inside, reported as an internal error)."""
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(isinstance(e, dict) and isinstance(e.get("sha256"), str)
                                              for e in files.values()):
        return "'files' must map each file name to its sha256"
    if not isinstance(manifest.get("model"), str):
        return "'model' must be the model's name"
    try:
        if len(bytes.fromhex(manifest.get("weights_hash"))) != WEIGHTS_HASH_BYTES:
            raise ValueError
    except (TypeError, ValueError):
        return f"'weights_hash' must be {2 * WEIGHTS_HASH_BYTES} hex digits"
    for halo in ("synthesis_halo", "analysis_halo"):  # analysis_halo: absent in exports before 2026-12-05
        value = manifest.get(halo, 0 if halo == "analysis_halo" else None)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return f"'{halo}' must be a whole number of pixels"
    return None


def onnx_session(path: Path, threads: int | None):
    """An onnxruntime CPU session; ``threads``: intra-op threads (None or 0: its default, all cores)."""
    from .runtime import import_onnxruntime

    ort = import_onnxruntime()
    if threads is not None:  # onnxruntime's own refusal is a pybind TypeError naming no argument; -1 passed
        if isinstance(threads, bool) or not isinstance(threads, numbers.Integral):
            raise TypeError(f"threads must be a whole number or None, not {type(threads).__name__}")
        if threads < 0:
            raise ValueError(f"threads must be 1 or more (None or 0: all cores), not {threads}")
        threads = int(threads)

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class DecodedLatent:
    y_hat: np.ndarray  # (M, h, w) float32
    header: Header
    extras: dict[str, bytes]  # format 4: the file's extras (docs/format.md)


class LiteDecoder:
    """One exported model: decodes the .edc files written with its weights.

    ``threads``: onnxruntime intra-op threads (None: its default, all cores). ``int8``: use the
    quantized synthesis ``decoder.int8.onnx`` (``export onnx --int8``; FileNotFoundError for an
    export without it, not the fp32 synthesis in silence)."""

    def __init__(self, model_dir: str | os.PathLike, threads: int | None = None, int8: bool = False) -> None:
        self.model_dir = Path(model_dir)
        decoder_file = "decoder.int8.onnx" if int8 else "decoder.onnx"
        self.manifest, tables = read_export(self.model_dir, [decoder_file])
        self.model_name: str = self.manifest["model"]
        self.weights_hash = bytes.fromhex(self.manifest["weights_hash"])
        self.synthesis_halo: int = self.manifest["synthesis_halo"]
        self.entropy = ExactEntropyModel.from_tables(tables)
        self.session = onnx_session(self.model_dir / decoder_file, threads)

    def _check(self, data: bytes, max_pixels: int | None) -> tuple[Container, tuple[int, int]]:
        """The parsed file and its latent shape, after the checks codec.api.decode_array makes."""
        if not isinstance(data, (bytes, bytearray, memoryview)):  # a path's bytes would be "not an .edc file"
            raise TypeError(f"expected an .edc file's bytes, not {type(data).__name__} (read a file with "
                            "Path(name).read_bytes())")
        container = Container.from_bytes(bytes(data))
        h = container.header
        check_pixels(h.width, h.height, max_pixels)
        if h.model != self.model_name:
            raise UnknownModelError(f"stream was written by model {h.model!r}; this decoder holds {self.model_name!r}")
        if h.weights_hash != self.weights_hash:
            raise WeightsMismatchError(f"stream was written by weights {h.weights_hash.hex()} of model {h.model!r}, "
                                       f"the exported model has {self.weights_hash.hex()}")
        if h.version < 3:
            raise FormatError(f"format version {h.version} streams use the float hyper-synthesis: decode them "
                              "with the PyTorch backend (edgecodec decompress --backend torch)")
        if len(container.streams) != 2:
            raise FormatError(f"corrupted .edc file: {len(container.streams)} streams, the model needs 2")
        padded = check_padded_pixels(h.width, h.height, LATENT_STRIDE * HYPER_STRIDE, max_pixels)
        return container, (padded[0] // LATENT_STRIDE, padded[1] // LATENT_STRIDE)

    def decode_latent(self, data: bytes, max_pixels: int | None = None) -> DecodedLatent:
        """The dequantized latent y_hat of a one-piece or tiled stream."""
        return self._latent(*self._check(data, max_pixels))

    def _latent(self, container: Container, shape: tuple[int, int],
                span: tuple[slice, slice] | None = None) -> DecodedLatent:
        """y_hat of a checked file (tiled, with ``span``: only the tiles that meet those latent
        rows and columns, the rest 0)."""
        h = container.header
        try:
            quality = file_quality(container, shape)
            y_hat = self.entropy.decode(container.streams, shape, quality, h.tile, span, gains_matched(h.version))
            return DecodedLatent(y_hat, h, container.extras)
        except (RuntimeError, ValueError, IndexError) as exc:  # the rANS decoder rejecting garbage
            raise FormatError(f"corrupted .edc file: entropy decoding failed ({exc})") from None

    def _synthesize(self, y_hat: np.ndarray) -> np.ndarray:
        """(M, h, w) latent -> (3, 16h, 16w) float image in [0, 1], unclamped."""
        return self.session.run(None, {"y_hat": y_hat[None]})[0][0]

    def decode(self, data: bytes, max_pixels: int | None = None,
               region: Region | None = None) -> tuple[np.ndarray, Header]:
        """An (H, W, 3) uint8 array, (H, W, 4) when the file kept the source's alpha, and the header.
        ``region``: (left, top, width, height), only that part of the image (of a tiled file, only
        the tiles it needs), the same pixels as the whole image's crop."""
        container, shape = self._check(data, max_pixels)
        h = container.header
        if region is not None:
            region = check_region(region, h.width, h.height)
        windows = (list(synthesis_windows(*shape, h.height, h.width, h.tile, self.synthesis_halo, region))
                   if h.tile else None)
        latent = self._latent(container, shape, latent_span(windows) if windows else None)
        y_hat, alpha = latent.y_hat, latent.extras.get(ALPHA)
        height, width = (h.height, h.width) if region is None else (region[3], region[2])
        out = np.empty((height, width, 3 if alpha is None else 4), dtype=np.uint8)
        if alpha is not None:  # checked before the synthesis, the costly part
            out[..., 3] = crop_region(decode_alpha(alpha, h.width, h.height), region)
        if not h.tile:  # one piece: the whole synthesis, then the crop
            rgb = _to_uint8(self._synthesize(y_hat)[:, : h.height, : h.width])
            if alpha is None and region is None:
                return rgb, h
            out[..., :3] = crop_region(rgb, region)
            return out, h
        for (rows, cols), crop, (out_rows, out_cols) in windows:
            x = self._synthesize(np.ascontiguousarray(y_hat[:, rows, cols]))
            out[out_rows, out_cols, :3] = _to_uint8(x[:, crop[0], crop[1]])
        return out, h


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8, rounding half to even as torch.round does.
    NaN (a hostile file's latents can overflow the synthesis) becomes 0, as in the PyTorch decoder.
    In place (x is the synthesis output, used once): fmax/fmin drop NaN, so no separate pass."""
    np.fmax(x, 0, out=x)
    np.fmin(x, 1, out=x)
    x *= 255
    np.rint(x, out=x)
    return x.astype(np.uint8).transpose(1, 2, 0).copy()
