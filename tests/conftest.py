"""Shared fixtures: the Kodak data, tiny random models registered through EDGECODEC_MODEL_PATH,
and helpers to run the CLI as a real process."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

# The test machine shares its CPU with other work: one thread everywhere (the thread-determinism
# test switches to 2 and back).
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
TINY = dict(channels=16, latent_channels=32, hyper_channels=16)
SHIPPED = "fidelity"  # the shipped model most tests use explicitly
FORMAT6 = REPO / "tests/data/format6"  # version-6 files that 9950a5f wrote (test_roi.py)


# --- data ----------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def data_dir() -> Path:
    """$EDGECODEC_DATA, else ../shared/data next to the repository. Missing data fails the run."""
    env = os.environ.get("EDGECODEC_DATA")
    root = Path(env) if env else Path(__file__).resolve().parents[2] / "shared/data"
    if not (root / "kodak" / "kodim23.png").is_file():
        pytest.fail(f"test data not found: {root}/kodak/kodim01.png .. kodim24.png "
                    "(set EDGECODEC_DATA to the folder holding kodak/)")
    return root


@pytest.fixture(scope="session")
def kodak(data_dir: Path) -> Path:
    return data_dir / "kodak"


@pytest.fixture(scope="session")
def kodim23(kodak: Path) -> Path:
    return kodak / "kodim23.png"


@pytest.fixture(scope="session")
def kodim23_rgb(kodim23: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(kodim23) as img:
        return np.array(img.convert("RGB"))


# --- models --------------------------------------------------------------------------------------
def make_tiny(seed: int):
    from edgecodec.models import create_model

    torch.manual_seed(seed)
    model = create_model("crb", **TINY)
    model.eval()
    return model


def make_tiny_run(run_dir: Path) -> Path:
    """A run folder export-model takes: a tiny model's checkpoint at step 2 beside the default
    training config; returns the checkpoint's path."""
    import yaml

    from edgecodec.train.config import load_config

    run_dir.mkdir(parents=True, exist_ok=True)
    model = make_tiny(0)
    checkpoint = run_dir / "ckpt-00000002.pt"
    torch.save({"model": model.state_dict(), "model_config": model.config.to_dict(), "step": 2}, checkpoint)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(load_config(None)))
    return checkpoint


@pytest.fixture(scope="session", autouse=True)
def tiny_models(tmp_path_factory):
    """Two tiny random models, both named "tiny", in two folders; EDGECODEC_MODEL_PATH points at
    the first for the whole session (tests switching it use monkeypatch, which restores it)."""
    from edgecodec.zoo import save_model

    folder_a = tmp_path_factory.mktemp("models_a")
    folder_b = tmp_path_factory.mktemp("models_b")
    save_model(make_tiny(0), folder_a, "tiny", {"summary": "tiny random test model A"})
    save_model(make_tiny(1), folder_b, "tiny", {"summary": "tiny random test model B"})
    previous = os.environ.get("EDGECODEC_MODEL_PATH")
    os.environ["EDGECODEC_MODEL_PATH"] = str(folder_a)
    yield {"a": folder_a, "b": folder_b}
    if previous is None:
        os.environ.pop("EDGECODEC_MODEL_PATH", None)
    else:
        os.environ["EDGECODEC_MODEL_PATH"] = previous


@pytest.fixture(scope="session")
def shipped_kodim23(kodim23: Path) -> dict[float, bytes]:
    """kodim23 coded by the shipped model at qualities 0, 0.5 and 1."""
    import edgecodec

    return {q: edgecodec.compress(kodim23, quality=q, model=SHIPPED) for q in (0.0, 0.5, 1.0)}


@pytest.fixture(scope="session")
def tiny_stream() -> bytes:
    """A small real stream of the tiny model (40x70 random image)."""
    import edgecodec

    x = np.random.RandomState(0).randint(0, 256, (40, 70, 3), dtype=np.uint8)
    return edgecodec.compress(x, quality=0.5, model="tiny")


# --- helpers -------------------------------------------------------------------------------------
def cli_env(model_path: Path | str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["EDGECODEC_MODEL_PATH"] = str(model_path) if model_path is not None else os.environ["EDGECODEC_MODEL_PATH"]
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("EDGECODEC_DEBUG", None)
    return env


def run_cli(*args: str, cwd: Path | str = REPO, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m edgecodec.cli ARGS` as a real process."""
    return subprocess.run([sys.executable, "-m", "edgecodec.cli", *map(str, args)], cwd=str(cwd),
                          env=env or cli_env(), capture_output=True, text=True, timeout=timeout)


def assert_one_error_line(stderr: str, *fragments: str) -> str:
    """The CLI's error contract: exactly one line on stderr, starting "edgecodec: error:"."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip("\n").splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{stderr}"
    assert lines[0].startswith("edgecodec: error:"), lines[0]
    for fragment in fragments:
        assert fragment.lower() in lines[0].lower(), lines[0]
    return lines[0]


def fix_crc(body: bytes) -> bytes:
    """Replace the trailing CRC32 of an .edc byte string with the right one for its other bytes."""
    body = bytes(body[:-4])
    return body + struct.pack("<I", zlib.crc32(body))


def png16(arr: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB, RGBA or gray + alpha PNG (Pillow cannot write them), from an
    (H, W, 3), (H, W, 4) or (H, W, 2) uint16 array."""
    h, w, c = arr.shape
    colour_type = {2: 4, 3: 2, 4: 6}[c]
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def synthetic_photo(rng: np.random.RandomState, size: int = 96) -> np.ndarray:
    """A size x size RGB uint8 image (waves and gradients plus noise) for training tests: never Kodak."""
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    base = np.stack([np.sin(xx * rng.uniform(1, 6) + rng.uniform(0, 6)) * 0.5 + 0.5,
                     yy * rng.uniform(0.2, 1.0), (xx + yy) / 2 * rng.uniform(0.2, 1.0)], axis=-1)
    return np.clip(base * 255 + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def legacy_streams(model, rgb: np.ndarray, quality: float) -> list[bytes]:
    """The streams of a format version 1/2 file (float hyper-synthesis), as edgecodec wrote them
    before version 3: CompressAI's gained hyperprior codec on the whole latent."""
    from edgecodec.codec.api import _to_tensor

    with torch.no_grad():
        y = model.analyze(_to_tensor(rgb, model.stride))
        g = model.gains(torch.tensor([quality]))
        out = model.latent_codec.compress(y, g["y_gain"], g["z_gain"], g["y_gain_inv"], g["z_gain_inv"])
    return [s[0] for s in out["strings"]]


def rgb_icc_profile(description: str, colorants: list[tuple[float, float, float]], gamma: float) -> bytes:
    """A minimal ICC v2 matrix/TRC display profile (what Adobe RGB and Display P3 files carry). Built
    here because Pillow can create only sRGB, LAB and XYZ profiles, and tests download nothing."""
    def s15(v: float) -> bytes:
        return struct.pack(">i", round(v * 65536))

    def xyz(v: tuple[float, float, float]) -> bytes:
        return b"XYZ " + bytes(4) + b"".join(s15(c) for c in v)

    ascii_ = description.encode() + b"\0"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(ascii_)) + ascii_ + bytes(4 + 4 + 2 + 1 + 67)
    curve = b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256)) + bytes(2)
    d50 = (0.9642, 1.0, 0.8249)
    tags = [(b"desc", desc), (b"wtpt", xyz(d50)), (b"rXYZ", xyz(colorants[0])), (b"gXYZ", xyz(colorants[1])),
            (b"bXYZ", xyz(colorants[2])), (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve),
            (b"cprt", b"text" + bytes(4) + b"none\0\0\0\0")]
    offset = 128 + 4 + 12 * len(tags)
    table, body = struct.pack(">I", len(tags)), b""
    for signature, data in tags:
        data += bytes(-len(data) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = offset + len(body)
    header = (struct.pack(">I", size) + bytes(4) + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ " + bytes(12)
              + b"acsp" + bytes(24) + struct.pack(">I", 0) + b"".join(s15(c) for c in d50) + bytes(48))
    assert len(header) == 128
    return header + table + body


# Adobe RGB (1998): its D50-adapted colorants and gamma 563/256.
ADOBE_RGB = rgb_icc_profile("Adobe RGB (1998) test profile",
                            [(0.6097, 0.3111, 0.0195), (0.2053, 0.6257, 0.0609), (0.1492, 0.0632, 0.7446)],
                            563 / 256)
