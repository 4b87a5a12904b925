"""Training data: recursive image folders, decoded once into memory, random antialiased
downscale + crop + flip per sample (the downscale removes the JPEG blocking of the training set).

``data.mode: resize`` (the original experiment) instead centre-crops every image to a square and
resizes it to ``crop`` x ``crop`` once, at load time, with no augmentation: training samples and
validation images are then whole, fixed 128x128 pictures."""

from __future__ import annotations

import hashlib
import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..codec.imageio import IMAGE_SUFFIXES, prepare_pil, register_plugins
from ..walk import LOOP, walk_tree

log = logging.getLogger(__name__)


def find_images(root: str | Path) -> list[Path]:
    """All files under root with an image suffix, sorted for reproducibility. Linked folders are
    followed, each real folder once (as folder runs of compress do); hidden files and folders
    (.thumbnails, macOS's ._ files, a trash) are not training data."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ValueError(f"--data {root} is a file: give the folder of training images")
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} (no such folder: --data, or data.root, names the training images)")
    register_plugins()  # JPEG XL, HEIC
    found = []
    for folder, names, why in walk_tree(root, skip=lambda path: os.path.basename(path).startswith(".")):
        if why == LOOP:  # followed, it would take what lies beside the data folder (a test set) too
            log.warning("not following %s: a link back up the tree (%s)", folder, os.path.realpath(folder))
        found += [Path(folder, name) for name in names
                  if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES]
    return sorted(p for p in found if p.is_file())


def is_validation(path: Path, fraction: float) -> bool:
    """Stable split by file-name hash: the same files are held out on every machine and run."""
    digest = hashlib.sha1(path.name.encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < fraction


def to_srgb(img: Image.Image) -> Image.Image:
    """Upright 8-bit sRGB by the codec's own conversion (``prepare_pil``: EXIF orientation, ICC
    profile, 16-bit and float levels, palettes, alpha dropped): the models train on the pixels they
    will be given. (Pillow's convert("RGB") clips 16-bit greyscale to white.)"""
    prepared = prepare_pil(img, alpha="drop", icc="convert", max_pixels=img.width * img.height)
    return Image.fromarray(prepared.rgb)


def load_rgb(path: Path) -> Image.Image | None:
    """Decode an image to RGB, or None (with a warning) when Pillow cannot read it."""
    try:
        with Image.open(path) as img:
            return to_srgb(img)
    except Exception as exc:  # any decoder failure means "skip this file"
        log.warning("skipping unreadable image %s: %s", path, exc)
        return None


class CropDataset(Dataset):
    """Random crops of `crop` pixels after a random antialiased downscale in `scale`. ``limit``:
    the first that many usable images of ``paths`` (a validation set drawn from training files)."""

    def __init__(self, paths: list[Path], crop: int, scale: tuple[float, float] = (0.5, 1.0),
                 train: bool = True, limit: int | None = None) -> None:
        self.crop, self.scale, self.train = crop, scale, train
        self.images, self.paths, unreadable, small, read = [], [], 0, 0, 0
        for path in paths:
            if limit is not None and len(self.images) >= limit:
                break
            read += 1
            image = load_rgb(path)
            if image is None:
                unreadable += 1
            elif min(image.size) < crop:
                small += 1
            else:
                self.images.append(image)
                self.paths.append(path)
        label, option = ("training", "data.crop") if train else ("validation", "data.val_crop")
        # one line a set: a folder where most files are skipped trains on few images, and says so
        log.info("%s images: %d of %d files (%d unreadable, %d smaller than %dx%d, %s)", label, len(self.images),
                 read, unreadable, small, crop, crop, option)
        if not self.images:
            raise ValueError(f"no usable {label} images (at least {crop}x{crop}, {option}) among {read} files "
                             f"({unreadable} unreadable, {small} smaller)")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        img = self.images[index]
        if self.train:
            # Python's random: seeded by the Trainer (batches are drawn in its process) and restored on resume.
            s = random.uniform(*self.scale)
            side = min(int(round(self.crop / s)), *img.size)
            left = random.randint(0, img.width - side)
            top = random.randint(0, img.height - side)
            patch = img.crop((left, top, left + side, top + side))
            if side != self.crop:
                patch = patch.resize((self.crop, self.crop), Image.Resampling.BICUBIC, reducing_gap=None)
            if random.random() < 0.5:
                patch = patch.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        else:  # deterministic validation: halve, then centre crop
            small = img.resize((img.width // 2, img.height // 2), Image.Resampling.BICUBIC)
            left, top = (small.width - self.crop) // 2, (small.height - self.crop) // 2
            patch = small.crop((left, top, left + self.crop, top + self.crop)) if min(small.size) >= self.crop \
                else img.crop((0, 0, self.crop, self.crop))
        arr = np.asarray(patch, dtype=np.float32) / 255.0
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def load_square(path: Path, size: int) -> np.ndarray | None:
    """Centre square of an image resized to size x size (antialiased bicubic), as an (H, W, 3)
    uint8 array; None (with a warning) when Pillow cannot read it. JPEGs decode at a reduced
    DCT scale no smaller than twice the target first (``draft``), which is fast and, being a
    fixed function of the file, identical in training and evaluation."""
    try:
        with Image.open(path) as img:
            img.draft("RGB", (2 * size, 2 * size))
            img = to_srgb(img)
    except Exception as exc:  # any decoder failure means "skip this file"
        log.warning("skipping unreadable image %s: %s", path, exc)
        return None
    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    img = img.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC,
                                                                reducing_gap=None)
    return np.array(img, dtype=np.uint8)


class ResizedDataset(Dataset):
    """Whole images, centre-cropped to a square and resized to ``size`` once (``data.mode: resize``).
    ``limit``: the first that many usable images of ``paths``, as CropDataset's."""

    def __init__(self, paths: list[Path], size: int, limit: int | None = None) -> None:
        self.paths = []
        images = []
        for path in paths:
            if limit is not None and len(images) >= limit:
                break
            arr = load_square(path, size)
            if arr is not None:
                self.paths.append(path)
                images.append(torch.from_numpy(arr).permute(2, 0, 1))
        if not images:
            raise ValueError(f"no usable images among {len(paths)} files")
        self.images = torch.stack(images)  # (N, 3, size, size) uint8: 48 KiB an image at 128 px

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index].float() / 255.0


def split_paths(root: str | Path, val_fraction: float) -> tuple[list[Path], list[Path]]:
    """Training and held-out files of a folder (stable hash split, see is_validation)."""
    paths = find_images(root)
    train = [p for p in paths if not is_validation(p, val_fraction)]
    val = [p for p in paths if is_validation(p, val_fraction)]
    if not train and val:  # every file held out (one file, or a val_fraction near 1): train on them too
        log.warning("every one of the %d image files is held out for validation (data.val_fraction=%g): "
                    "training on them as well", len(val), val_fraction)
        train = val
    return train, val


def data_digest(root: str | Path, *datasets: Dataset) -> dict[str, Any]:
    """The files each dataset uses (paths relative to ``root``) as counts and a SHA-256: a resumed
    run compares it with its checkpoint's, so a folder changed in between does not go unnoticed."""
    digest = hashlib.sha256()
    for dataset in datasets:
        for path in dataset.paths:
            digest.update(os.fsencode(os.path.relpath(path, root)) + b"\0")
        digest.update(b"\1")
    return {"files": [len(d.paths) for d in datasets], "sha256": digest.hexdigest()}


VAL_FROM_TRAIN = 8  # validation images taken from the training files when none is held out


def make_datasets(root: str | Path, crop: int, scale: tuple[float, float], val_fraction: float,
                  val_crop: int = 256, mode: str = "crop") -> tuple[Dataset, Dataset]:
    if mode not in ("crop", "resize"):
        raise ValueError(f"data.mode must be crop or resize, not {mode!r}")
    train, val = split_paths(root, val_fraction)
    train_set = ResizedDataset(train, crop) if mode == "resize" else CropDataset(train, crop, scale, train=True)
    val_set = validation_set(train, val, val_crop, mode)
    if not val:  # tiny folders: validate on a few training images rather than on nothing
        log.warning("no image file is held out for validation (%d files, data.val_fraction=%g): validating on "
                    "%d training images (the first usable ones; data.val_images at most), so best.pt is chosen "
                    "on images it trained on", len(train), val_fraction, len(val_set))
    return train_set, val_set


def validation_set(train: list[Path], val: list[Path], size: int, mode: str) -> Dataset:
    """The held-out files of split_paths; a folder holding none out: its first 8 usable training images."""
    limit = None if val else VAL_FROM_TRAIN
    if mode == "resize":
        return ResizedDataset(val or train, size, limit=limit)
    return CropDataset(val or train, size, train=False, limit=limit)
