"""A Pillow plugin for .edc files: ``Image.open("photo.edc")`` and ``img.save("photo.edc")``.

Importing ``edgecodec`` (or this module) registers the format "EDC" with Pillow, with the
extension ``.edc`` and the MIME type ``image/x-edc``::

    import edgecodec  # registers the plugin
    from PIL import Image

    with Image.open("photo.edc") as img:   # reads and checks the file, decodes nothing yet: size, mode
        print(img.size, img.mode)
        img.load()                           # decodes (this is where torch is imported)
    img.save("copy.edc", quality=0.6)        # or target_size="40KB", model="fidelity", refine_steps=50

Like ``pillow-avif-plugin`` and ``pillow-jxl-plugin``: an ``ImageFile`` subclass with
``_accept`` on the magic bytes, ``_open`` that parses the container (checksum included), and
``_save``. This module imports only Pillow, numpy and the container parser: the codec API (and torch)
is imported on the first ``load()`` or ``save()``, so registering the plugin costs nothing.

Save options: ``quality`` (0..1, default 0.5: edgecodec's scale, not Pillow's 0-100),
``model`` (a name from ``edgecodec models``), ``target_size`` (bytes, or a string like "40KB"),
``target_bpp``, ``target_psnr`` (dB) or ``target_ms_ssim`` (instead of quality), ``alpha``
("keep", the default, "drop" or "refuse"), ``metadata`` ("strip", the default, or "keep": the
image's ``info["exif"]`` and ``info["xmp"]``), ``icc`` ("keep", the default, or "convert" to
sRGB: an RGB image's ``info["icc_profile"]``), ``refine_steps`` (encoder refinement, fidelity
models), ``roi`` with ``roi_quality`` (regions of interest, as ``edgecodec.compress`` takes them)
and ``max_pixels`` (the pixel limit, default Pillow's ``Image.MAX_IMAGE_PIXELS``).
Pillow's own ``exif``, ``xmp`` and ``icc_profile`` keywords replace the image's (EXIF and XMP
are stored with ``metadata="keep"``, as the image's own). As Pillow's plugins do without ``save_all``, an
animated image saves its current frame; with ``save_all=True`` or ``append_images`` more than one frame
is refused (OSError). An image the format cannot hold (empty, alpha with
``alpha="refuse"``, an unknown model) raises OSError, a bad value ValueError or TypeError.

Opened images carry ``info["edc_model"]`` and ``info["edc_quality"]``, mode LA or RGBA when the
file kept an alpha channel, a kept profile in ``info["icc_profile"]`` and kept metadata in
``info["exif"]`` and ``info["xmp"]``.
"""

from __future__ import annotations

import io
from typing import IO

from PIL import Image, ImageFile, UnidentifiedImageError

# No torch here: the codec API is imported on load/save.
from .codec.container import ALPHA, GRAYSCALE_SOURCE, MAGIC, Container, read_file
from .codec.imageio import image_info
from .errors import EdgecodecError, FormatError

FORMAT = "EDC"
EXTENSION = ".edc"
MIME = "image/x-edc"


def _accept(prefix: bytes) -> bool:
    return prefix[:4] == MAGIC


class EdgecodecImageFile(ImageFile.ImageFile):
    format = FORMAT
    format_description = "edgecodec learned image codec"
    # The file until load() decodes it. A class default: a pickled or deep-copied image is rebuilt
    # by Pillow from its pixels without _open, and loads as any loaded image.
    _edc_data: bytes | None = None

    def _open(self) -> None:
        # Decoding needs the whole stream; the file is small (it is compressed), and reading it
        # now lets Pillow close the file when it wants to. read_file reads to the end of the input
        # (refusing one larger than an .edc file of the header's image size can be); parsing checks
        # the CRC and the layout, so bytes after the file are refused as damage.
        try:
            self._edc_data = read_file(self.fp, str(self.filename or "the .edc data"))
            container = Container.from_bytes(self._edc_data)
        except FormatError as exc:
            # Not SyntaxError, which Pillow takes as "another plugin may read it" and drops for a bare
            # "cannot identify image file": the magic says it is an .edc file, so its reason is said.
            raise UnidentifiedImageError(f"cannot identify image file {self.filename or 'the .edc data'!r} as an "
                                         f"image: {exc}") from None
        header = container.header
        self._size = (header.width, header.height)
        grey = header.conversions & GRAYSCALE_SOURCE
        self._mode = ("L" if grey else "RGB") + ("A" if ALPHA in container.extras else "")
        self.info.update(image_info(container))
        self.tile = []

    def load(self):  # type: ignore[override]
        if self._edc_data is not None:
            from .codec.api import decompress

            try:
                decoded = decompress(self._edc_data)
            except EdgecodecError as exc:  # damaged data, other weights: Pillow's plugins raise OSError
                raise OSError(f"cannot decode .edc image: {exc}") from exc
            self._edc_data = None
            if decoded.mode != self.mode or decoded.size != self.size:  # cannot happen for a valid stream
                raise OSError(f"decoded a {decoded.mode} {decoded.size} image, header said {self.mode} {self.size}")
            if self.fp and self._exclusive_fp:
                self.fp.close()
            self.fp = io.BytesIO(decoded.tobytes())
            self.tile = [ImageFile._Tile("raw", (0, 0) + self.size, 0, (self.mode, 0, 1))]
        return super().load()

    def load_seek(self, pos: int) -> None:  # the decoded pixels are read from an in-memory buffer
        pass


# Pillow's own save keywords for metadata, as its PNG, WebP and JPEG plugins take them.
_METADATA_KEYWORDS = ("exif", "xmp", "icc_profile")


def _with_saved_metadata(im: Image.Image, info: dict) -> Image.Image:
    """``im`` (its current frame, as Pillow's plugins save without save_all) with the ``exif``,
    ``xmp`` and ``icc_profile`` save keywords in place of its own. Whether EXIF and XMP are stored
    still follows ``metadata`` (stripped unless "keep"): a given block does not bring the image's
    own other one (its GPS position, say) along."""
    given = {key: info[key] for key in _METADATA_KEYWORDS if key in info}
    if not given and getattr(im, "n_frames", 1) == 1:
        return im
    im = im.copy()  # an ordinary image of the current frame, with a copy of its info
    for key, value in given.items():
        if isinstance(value, Image.Exif):
            value = value.tobytes()
        if value:
            im.info[key] = value
        else:  # exif=b"", icc_profile=None: none
            im.info.pop(key, None)
    return im


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    from .codec.api import compress

    info = im.encoderinfo
    if info.get("append_images"):  # Pillow < 11.2.1 sends append_images without save_all here, not to _save_all
        _save_all(im, fp, filename)
        return
    im = _with_saved_metadata(im, info)
    try:
        data = compress(im, quality=info.get("quality"), model=info.get("model"),
                        target_size=info.get("target_size"), target_bpp=info.get("target_bpp"),
                        target_psnr=info.get("target_psnr"), target_ms_ssim=info.get("target_ms_ssim"),
                        alpha=info.get("alpha", "keep"), metadata=info.get("metadata", "strip"),
                        icc=info.get("icc", "keep"), refine_steps=info.get("refine_steps", 0),
                        roi=info.get("roi"), roi_quality=info.get("roi_quality", 1.0),
                        max_pixels=info.get("max_pixels"))
    except EdgecodecError as exc:
        if isinstance(exc, ValueError):  # a bad argument value: Pillow users catch ValueError for those
            raise
        # An image this format cannot hold (empty, alpha with alpha="refuse", over the pixel
        # limit): OSError, as Pillow's plugins raise ("cannot write mode RGBA as JPEG").
        raise OSError(f"cannot write EDC: {exc}") from exc
    fp.write(data)


def _save_all(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    """``save(..., save_all=True)`` (or ``append_images=``): a single picture is saved as ``_save``
    saves it; more frames are refused, as compress refuses animations, rather than cut to the first.
    Without this handler Pillow raised a bare ``KeyError: 'EDC'``."""
    frames = getattr(im, "n_frames", 1) + len(list(im.encoderinfo.get("append_images") or ()))
    if frames > 1:
        raise OSError(f"cannot write EDC: {frames} frames; edgecodec codes one picture (save without save_all "
                      "and append_images to save the current frame)")
    im.encoderinfo = {k: v for k, v in im.encoderinfo.items() if k != "append_images"}  # an empty list
    _save(im, fp, filename)


def register() -> None:
    """Register the EDC format with Pillow (idempotent; done when this module is imported)."""
    Image.register_open(FORMAT, EdgecodecImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_save_all(FORMAT, _save_all)
    Image.register_extension(FORMAT, EXTENSION)
    Image.register_mime(FORMAT, MIME)


register()

__all__ = ["EXTENSION", "FORMAT", "MIME", "EdgecodecImageFile", "register"]
