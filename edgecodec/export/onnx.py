"""``edgecodec export onnx``: a shipped model as ONNX graphs + entropy tables + manifest.

Graphs (dynamic height and width, opset 18): ``encoder.onnx`` (image in [0, 1] -> y),
``hyper_encoder.onnx`` (y -> z), ``decoder.onnx`` (y_hat -> image in [0, 1], unclamped) and
``hyper_decoder.onnx`` (z_hat -> Gaussian parameters, float: for reference and other runtimes;
the lite decoder uses the exact integer version in the tables). ``tables.safetensors`` holds
``EdgeCodecModel.entropy_tables()`` plus the encoder's log gains. ``manifest.json`` names the
model, the weights hash that .edc headers record, the format version, and every file's SHA-256.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import zoo
from ..codec.container import FORMAT_VERSION
from ..codec.tiling import analysis_halo, synthesis_halo
from ..atomic import exclusive_lock, umask
from ..errors import OutputExistsError, OutputWriteError
from ..lite.decoder import EXPORT_FORMAT, MANIFEST, TABLES_SOURCE, read_export
from ..models import EdgeCodecModel
from ..paths import xdg_dir

OPSET = 18  # 18: Col2Im, the pixel shuffle of the synthesis (_pixel_shuffle_as_col2im)


class _Analysis(nn.Module):
    def __init__(self, model: EdgeCodecModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model._latent(x)


def subpixel_conv(deconv: nn.ConvTranspose2d) -> nn.Module:
    """A stride-s transposed convolution as a convolution to s*s times the channels followed by
    PixelShuffle(s) (Shi et al. 2016): the same function with no multiplications by inserted
    zeros, and onnxruntime's fast Conv kernels instead of ConvTranspose (1.3x faster synthesis
    measured here). Output pixel s*m + r takes input pixels m - D .. m + D with kernel tap
    r + p + s * (D - d). Returned unchanged when the layer is not of that form."""
    square = all(v[0] == v[1] for v in (deconv.kernel_size, deconv.stride, deconv.padding, deconv.output_padding))
    if not square or deconv.groups != 1 or deconv.dilation != (1, 1):
        return deconv
    k, s, p, op = deconv.kernel_size[0], deconv.stride[0], deconv.padding[0], deconv.output_padding[0]
    # Output exactly s times the input, with the same reach D on both sides for every phase r.
    reach = {math.ceil((k - 1 - r - p) / s) for r in range(s)} | {(r + p) // s for r in range(s)}
    if k + op - 2 * p != s or len(reach) != 1:
        return deconv
    d_max = reach.pop()
    w = deconv.weight.detach()  # (in, out, k, k)
    cin, cout = w.shape[:2]
    taps = 2 * d_max + 1
    weight = torch.zeros(cout, s, s, cin, taps, taps, dtype=w.dtype)
    for ry in range(s):
        for rx in range(s):
            for dy in range(taps):
                for dx in range(taps):
                    jy, jx = ry + p + s * (d_max - dy), rx + p + s * (d_max - dx)
                    if 0 <= jy < k and 0 <= jx < k:
                        weight[:, ry, rx, :, dy, dx] = w[:, :, jy, jx].T
    conv = nn.Conv2d(cin, cout * s * s, taps, padding=d_max, bias=deconv.bias is not None)
    conv.weight.data = weight.reshape(cout * s * s, cin, taps, taps)
    if deconv.bias is not None:
        conv.bias.data = deconv.bias.detach().repeat_interleave(s * s)
    return nn.Sequential(conv, nn.PixelShuffle(s))


def _with_subpixel_convs(module: nn.Module) -> nn.Module:
    module = copy.deepcopy(module)
    for name, child in list(module.named_children()):
        replacement = subpixel_conv(child) if isinstance(child, nn.ConvTranspose2d) else _with_subpixel_convs(child)
        setattr(module, name, replacement)
    return module


class _Synthesis(nn.Module):
    """y_hat -> image in [0, 1] (unclamped): the model's synthesis with sub-pixel convolutions."""

    def __init__(self, model: EdgeCodecModel) -> None:
        super().__init__()
        self.g_s = _with_subpixel_convs(model.g_s)

    def forward(self, y_hat: torch.Tensor) -> torch.Tensor:
        return (self.g_s(y_hat) + 1) / 2


def _export_graph(module: nn.Module, example: torch.Tensor, path: Path, input_name: str, output_name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        # dynamo=False: the TorchScript-based exporter handles these plain conv nets and needs no
        # onnxscript; dynamic axes keep height and width free.
        torch.onnx.export(module.eval(), (example,), str(path), input_names=[input_name], output_names=[output_name],
                          dynamic_axes={input_name: {2: "height", 3: "width"}, output_name: {2: "height", 3: "width"}},
                          opset_version=OPSET, dynamo=False)


def _pixel_shuffle_as_col2im(path: Path) -> None:
    """Rewrite every DepthToSpace (mode CRD, what PixelShuffle exports to) of a graph as Reshape +
    Col2Im with stride = kernel = block size: the same function (channel c*b*b + i*b + j goes to
    pixel (i, j) of block c in both), but onnxruntime runs DepthToSpace as a generic 6-D transpose
    and Col2Im as strided copies. Measured here (onnxruntime 1.32, 2 threads, 256 channels
    192x256 -> 64 x 384x512): 31-55 ms against 15 ms. Graph surgery by hand because neither the
    exporter nor onnxruntime's optimizer offers this rewrite."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    nodes, constants = [], []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type != "DepthToSpace" or attrs.get("mode", b"DCR") != b"CRD":
            nodes.append(node)
            continue
        b, x, prefix = attrs["blocksize"], node.input[0], f"{node.output[0]}/col2im"
        constants += [numpy_helper.from_array(np.array(v, dtype=np.int64), f"{prefix}/{name}")
                      for name, v in (("columns", [0, 0, -1]), ("block", [b, b]))]
        nodes += [helper.make_node("Reshape", [x, f"{prefix}/columns"], [f"{prefix}/x"]),  # (N, C*b*b, H*W)
                  helper.make_node("Shape", [x], [f"{prefix}/hw"], start=2),
                  helper.make_node("Mul", [f"{prefix}/hw", f"{prefix}/block"], [f"{prefix}/size"]),
                  helper.make_node("Col2Im", [f"{prefix}/x", f"{prefix}/size", f"{prefix}/block"], list(node.output),
                                   strides=[b, b])]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(constants)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _file_entry(path: Path) -> dict:
    return {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "bytes": path.stat().st_size}


def export_onnx(model_name: str, out_dir: str | os.PathLike, calibration: list[Path] | None = None,
                weights_hash: bytes | None = None) -> Path:
    """Write the export of a model into out_dir (created; replaced atomically if it exists).

    ``calibration``: images for an int8 synthesis (``decoder.int8.onnx``, export/int8.py); none: fp32 only.
    ``weights_hash``: the model of that name with those weights (``zoo.load_model``), not the first."""
    from safetensors.numpy import save_file

    model, weights_hash = zoo.load_model(model_name, weights_hash)
    if not isinstance(model, EdgeCodecModel) or model.config.prior == "factorized":
        raise ValueError(f"model {model_name!r} cannot be exported: the lite decoder needs a hyperprior codec")
    out_dir = Path(out_dir)
    _check_replaceable(out_dir)  # before any work
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    except OSError as exc:  # a file on its path, /proc: exit 11 naming the output, not the temporary folder
        raise OutputWriteError.making(out_dir, exc) from None
    try:
        m, h = model.config.latent_channels, model.config.hyper_channels
        hyper = model.latent_codec["hyper"]
        with torch.no_grad():
            _export_graph(_Analysis(model), torch.rand(1, 3, 128, 192), tmp / "encoder.onnx", "x", "y")
            _export_graph(hyper.h_a, torch.randn(1, m, 8, 12), tmp / "hyper_encoder.onnx", "y", "z")
            _export_graph(_Synthesis(model), torch.randn(1, m, 8, 12), tmp / "decoder.onnx", "y_hat", "x_hat")
            _pixel_shuffle_as_col2im(tmp / "decoder.onnx")
            _export_graph(hyper.h_s, torch.randn(1, h, 2, 3), tmp / "hyper_decoder.onnx", "z_hat", "params")
        if calibration:
            from .int8 import calibration_latents, quantize_synthesis

            quantize_synthesis(tmp / "decoder.onnx", tmp / "decoder.int8.onnx",
                               calibration_latents(model, calibration))
        tables = model.entropy_tables()
        tables["gain.log_y_gain"] = model.log_y_gain.detach().numpy().copy()
        tables["gain.log_z_gain"] = model.log_z_gain.detach().numpy().copy()
        # Named after their weights: lite.decoder.read_export checks them against the manifest. One
        # metadata key: safetensors writes several in a per-process random order, and an export
        # of the same weights must be the same bytes.
        save_file(tables, str(tmp / "tables.safetensors"), metadata={TABLES_SOURCE: json.dumps(
            {"model": model_name, "weights_hash": weights_hash.hex()}, sort_keys=True)})
        files = sorted(p.name for p in tmp.iterdir())
        manifest = {
            "export_format": EXPORT_FORMAT, "model": model_name, "weights_hash": weights_hash.hex(),
            "format_version": FORMAT_VERSION, "config": model.config.to_dict(), "stride": model.stride,
            "synthesis_halo": synthesis_halo(model), "analysis_halo": analysis_halo(model),  # tiles' windows
            "opset": OPSET, "torch": torch.__version__,
            "parameters": model.parameter_counts(),
            "files": {name: _file_entry(tmp / name) for name in files},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        # mkdtemp makes a 0700 folder (and safetensors a 0600 file): an export is read by whoever
        # runs the decoder (a service user on a device), so it gets the modes the umask gives.
        mask = umask()
        for path in tmp.iterdir():
            path.chmod(0o666 & ~mask)
        tmp.chmod(0o777 & ~mask)
        _replace_folder(out_dir, tmp)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _replace_folder(out_dir: Path, new: Path) -> None:
    """Put the folder ``new`` (a sibling) in the place of ``out_dir``. An earlier export is renamed
    aside first and deleted only once the new one is in place, so an interruption or error in
    between puts it back: one of the two exports is there at every moment."""
    old = None
    try:
        if out_dir.exists():
            _check_replaceable(out_dir)  # again: the folder may have changed during the export
            old = new.with_name(new.name + "-old")  # a sibling: renaming needs no permission inside it
            out_dir.rename(old)
        new.rename(out_dir)
    except BaseException as exc:
        if old is not None and old.exists() and not out_dir.exists():
            old.rename(out_dir)
        if isinstance(exc, OSError):  # e.g. a read-only folder: exit 11 naming the output
            raise OutputWriteError(f"cannot write {out_dir}: {exc.strerror or exc}") from None
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _check_replaceable(out_dir: Path) -> None:
    """An existing output folder is replaced only when it is empty or holds exactly an earlier
    export (its manifest and the files the manifest lists): ``-o ~/Documents`` must never delete it."""
    if not out_dir.exists() and not out_dir.is_symlink():
        return
    if out_dir.is_symlink() or not out_dir.is_dir():
        raise OutputExistsError(f"{out_dir} exists and is not a folder: choose another output folder")
    names = {p.name for p in out_dir.iterdir()}
    if not names:
        return
    try:
        manifest = json.loads((out_dir / MANIFEST).read_text())
        ours = manifest.get("export_format") == EXPORT_FORMAT and names <= {MANIFEST, *manifest["files"]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        ours = False
    if not ours:
        raise OutputExistsError(f"{out_dir} exists and is not an edgecodec export (it would be replaced): "
                                "choose a new or empty output folder")


def export_cache_dir(model_name: str, weights_hash: bytes) -> Path:
    """Where ``decompress --backend onnx`` keeps a model's export: $EDGECODEC_CACHE, else
    $XDG_CACHE_HOME/edgecodec (by default ~/.cache/edgecodec), as scripts/setup.sh's cache."""
    xdg_cache = xdg_dir("XDG_CACHE_HOME", Path.home() / ".cache")
    root = Path(os.environ.get("EDGECODEC_CACHE") or xdg_cache / "edgecodec")
    return root / "onnx" / f"{model_name}-{weights_hash.hex()}"


def ensure_export(model_name: str, refresh: bool = False, weights_hash: bytes | None = None) -> Path:
    """The cached export of a model's installed weights, exported on first use, again when the
    cached one predates a manifest field the lite coders read (``analysis_halo``, for tiled
    encoding), or with ``refresh`` (a load of it failed) when its files do not match its manifest
    (another process may have renewed it meanwhile). ``weights_hash``: a file's, for the model of
    that name with those weights (a hidden one too, zoo.load_model)."""
    _, weights_hash = zoo.load_model(model_name, weights_hash)
    out = export_cache_dir(model_name, weights_hash)
    if not refresh and _current(out):  # only read: a read-only cache (a container image's) serves as well
        return out
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        # One process exports, the others wait and use its export: without the lock, processes started
        # together on an empty cache replaced each other's folders under each other's readers.
        with exclusive_lock(out.parent / f".{out.name}.lock"):
            if not _current(out) or (refresh and not _intact(out)):
                export_onnx(model_name, out, weights_hash=weights_hash)
    except OSError as exc:
        raise OutputWriteError(f"cannot write the ONNX export cache {out.parent}: {exc.strerror or exc}; set "
                               "EDGECODEC_CACHE to a writable folder, or pass --onnx-dir an export "
                               "(edgecodec export onnx)") from None
    return out


def _current(export_dir: Path) -> bool:
    """Whether an export has a manifest with every field the lite coders read."""
    try:
        return "analysis_halo" in json.loads((export_dir / MANIFEST).read_text())
    except (OSError, ValueError, TypeError):
        return False


def _intact(export_dir: Path) -> bool:
    """Whether every file of an export matches its manifest (lite.decoder.read_export's checks)."""
    try:
        manifest = json.loads((export_dir / MANIFEST).read_text())
        read_export(export_dir, [name for name in manifest["files"] if name.endswith(".onnx")])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    return True
