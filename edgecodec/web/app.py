"""The comparison page's HTTP application (FastAPI).

Routes:

``GET /``                 the page (``static/index.html``; ``/static/*`` its script and style)
``GET /api/info``         models, available classical codecs (``codecs``, ``codec_labels``) and the
                          server's limits
``POST /api/compress``    the image file as the raw request body; query parameters ``model``,
                          ``quality`` (0..1) or ``target_size`` (bytes or "40KB"), ``lpips`` (0/1),
                          ``roi`` ("left,top,width,height": a region of interest coded at
                          ``roi_quality``, default 1, and measured alone as ``region_psnr``).
                          Answers JSON: the edgecodec stream and the JPEG, WebP, AVIF, JPEG XL and
                          HEIC files of at most its size, each with bytes, bpp, PSNR, MS-SSIM,
                          ST-LPIPS (when asked), the file and its decoded PNG (base64). A decode
                          equal to the original has ``identical`` true and PSNR null (infinite).
                          A codec that cannot code the image (WebP past 16,383 pixels a side) is
                          listed in ``skipped`` with its label and reason instead.

Errors are JSON ``{"error": message}``: 413 for an upload or an image over the limits, 400 for
anything that is not a readable image or a bad parameter, 408 for an upload that stalls, 403 for
a request another site's page sent (SameOriginOnly). Uploads are read into memory (never
to disk) and refused as soon as they pass the byte limit. The CPU work runs in a thread pool, so
requests do not wait for one another (up to ``workers`` comparisons at once, the others queue;
``/api/info`` never queues); the event loop stays free. A comparison whose client went away (the
page aborts its request when a setting changes) stops at its next stage (after the edgecodec
encode, before each classical codec) rather than holding a worker to the end.
"""

from __future__ import annotations

import argparse
import base64
import io
import ipaddress
import math
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

import anyio
import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from PIL import Image, UnidentifiedImageError

from .. import __version__, argtypes
from ..lite.tiles import Region
from .command import DEFAULT_MAX_PIXELS, DEFAULT_MAX_UPLOAD_MB

# Formats the server reads; Pillow knows more, but untrusted uploads get the common ones only.
UPLOAD_FORMATS = ("PNG", "JPEG", "WEBP", "AVIF", "GIF", "BMP", "TIFF", "PPM", "JXL", "HEIF")
CLASSICAL = ("jpeg", "webp", "avif", "jxl", "heic")  # those the Pillow build has
MIME = {"edgecodec": "application/x-edc", "jpeg": "image/jpeg", "webp": "image/webp", "avif": "image/avif",
        "jxl": "image/jxl", "heic": "image/heic"}

STATIC = Path(__file__).parent / "static"
DISCONNECT_POLL_S = 0.25
UPLOAD_STALL_S = 30.0  # an upload that sends nothing for this long is answered 408 (and Ctrl+C waits no longer)


class WebError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


CLIENT_GONE = 499  # nginx's "client closed request": nobody reads the answer


def _check_stop(stop: Callable[[], bool] | None) -> None:
    if stop is not None and stop():
        raise WebError(CLIENT_GONE, "the client went away: comparison stopped")


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _size(n: int) -> str:
    if n < 10_000:
        return f"{n:,} bytes"
    # KB below 1 MB: a --max-upload-mb of 0.02 was "a limit of 0 MB", 0.05 "0.1 MB"
    value, unit = (n / 1e3, "KB") if n < 999_950 else (n / 1e6, "MB") if n < 999_950_000 else (n / 1e9, "GB")
    return f"{value:,.1f}".rstrip("0").rstrip(".") + f" {unit}"  # 50 KB, 25 MB, 999.6 MB, 1,000 GB


def _png(image: np.ndarray | Image.Image) -> bytes:
    buf = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


class _Metrics:
    """PSNR, MS-SSIM and (lazily built, shared, locked) ST-LPIPS."""

    def __init__(self) -> None:
        self._lpips: Any = None
        self._lock = threading.Lock()

    def __call__(self, reference: np.ndarray, decoded: np.ndarray, lpips: bool) -> dict[str, Any]:
        from ..metrics import ms_ssim, psnr

        value = psnr(reference, decoded)  # infinite exactly when the decode is identical
        out: dict[str, Any] = {"psnr": _finite(value), "identical": math.isinf(value),
                               "ms_ssim": _finite(ms_ssim(reference, decoded)), "st_lpips": None}
        if lpips:
            with self._lock:  # one network for all requests; it caches the reference's features
                if self._lpips is None:
                    from ..eval.runner import STLPIPS

                    self._lpips = STLPIPS()
                out["st_lpips"] = _finite(self._lpips(reference, decoded))
        return out


class SameOriginOnly:
    """ASGI middleware refusing (403) requests that other web pages make the browser send.

    A page on any site can POST to http://127.0.0.1:8000 (a "simple" request: no preflight) and
    start comparisons that take minutes and gigabytes; through DNS rebinding (a name of its own
    resolving to 127.0.0.1) it can also read the answers. So a request that names another origin
    (``Origin``'s host and port) than the server it reached (``Host``) is refused unless it only
    reads (GET, HEAD); the scheme is not compared, so a page served as https by a TLS-terminating
    proxy still reaches it. With ``loopback_only`` (the server bound to a loopback address) so is a
    ``Host`` that is not localhost, a loopback address or one of ``allowed_hosts`` (the names a
    reverse proxy passes on). Written here: Starlette's TrustedHostMiddleware checks names only,
    and cuts an IPv6 Host ([::1]:8000) at its first colon."""

    def __init__(self, app: Callable, loopback_only: bool, allowed_hosts: Sequence[str] = ()) -> None:
        self.app = app
        self.loopback_only = loopback_only
        self.allowed_hosts = {name.lower() for name in allowed_hosts}

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            problem = self.problem(scope)
            if problem:
                await JSONResponse({"error": problem}, status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def problem(self, scope: dict) -> str | None:
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        if self.loopback_only:
            try:
                name = urlsplit(f"//{host}").hostname or ""
                local = name in ("localhost", *self.allowed_hosts) or ipaddress.ip_address(name).is_loopback
            except ValueError:  # a name other than localhost, or a bad port
                local = False
            if not local:
                return (f"this server answers requests to this machine only, not to host {host!r} "
                        "(edgecodec serve --allow-host NAME lets a reverse proxy's name through)")
        origin = headers.get("origin")
        if scope["method"] not in ("GET", "HEAD") and origin is not None and \
                (origin == "null" or urlsplit(origin).netloc.lower() != host.lower()):
            return f"cross-origin request refused: a page of {origin} cannot use this server"
        return None


def _upload_formats() -> list[str]:
    from ..codec.imageio import register_plugins

    register_plugins()  # JPEG XL and HEIC, where installed
    Image.init()
    return [f for f in UPLOAD_FORMATS if f in Image.OPEN]


def read_image(data: bytes, max_pixels: int):
    """The upload as a PreparedImage (8-bit RGB), or a WebError saying why not."""
    from ..codec.imageio import load_image, pillow_pixel_limit
    from ..errors import ImageTooLargeError, InputImageError

    if not data:
        raise WebError(400, "the upload is empty: choose an image file")
    try:
        with pillow_pixel_limit(max_pixels):  # ours governs, also above Pillow's own limit
            img = Image.open(io.BytesIO(data), formats=_upload_formats())
    except Image.DecompressionBombError:  # Pillow's own limit, here also ours
        raise WebError(413, f"image too large: over this server's limit of {max_pixels:,} pixels "
                            "(edgecodec serve --max-pixels)") from None
    except UnidentifiedImageError:
        raise WebError(400, "not an image this server can read: upload a PNG, JPEG, WebP, AVIF, GIF, BMP, "
                            "TIFF, PPM, JPEG XL or HEIC file") from None
    with img:
        pixels = img.width * img.height
        if pixels > max_pixels:
            raise WebError(413, f"image of {img.width}x{img.height} = {pixels:,} pixels is over this server's "
                                f"limit of {max_pixels:,} pixels (edgecodec serve --max-pixels)")
        try:
            # sRGB numbers: the page shows untagged PNGs next to the classical codecs' decodes
            return load_image(img, alpha="drop", max_pixels=max_pixels, icc="convert"), img.format
        except ImageTooLargeError as exc:
            raise WebError(413, str(exc)) from None
        except InputImageError as exc:  # a refusal that says why (2 frames, empty): not "cannot read" it
            raise WebError(400, str(exc)) from None
        except (OSError, ValueError, SyntaxError) as exc:  # Pillow's failure to decode the pixels
            raise WebError(400, f"cannot read this image: {exc}") from None


def compare(data: bytes, *, model: str | None, quality: float | None, target_size: str | None, lpips: bool,
            max_pixels: int, metrics: _Metrics, roi: Region | None = None, roi_quality: float = 1.0,
            stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """The whole comparison for one upload (CPU work: run it in a worker thread). ``roi``: a region
    of interest, coded by edgecodec at ``roi_quality`` and measured alone in every entry. ``stop``:
    true once nobody waits for the answer; checked between stages (WebError 499 then)."""
    from .. import zoo
    from ..codec.api import Encoder, decompress, parse_size, quality_to_q16
    from ..codec.container import conversion_names
    from ..errors import EdgecodecError
    from ..eval import classical
    from ..lite.tiles import crop_region
    from ..metrics import psnr

    start = time.perf_counter()
    _check_stop(stop)  # gone while its request queued for a worker
    model = model or zoo.DEFAULT_MODEL
    prepared, source_format = read_image(data, max_pixels)
    rgb = prepared.rgb
    height, width = rgb.shape[:2]
    pixels = width * height
    try:
        # The encoder checks that the region lies within the image (a UsageError, answered 400).
        encoder = Encoder(prepared, model, roi=None if roi is None else [roi], roi_quality=roi_quality)
        t0 = time.perf_counter()
        if target_size is not None:
            requested = parse_size(target_size)
            search = encoder.encode_to_size(requested)
            edc, q16 = search.data, search.quality_q16
        else:
            requested = None
            q16 = quality_to_q16(quality if quality is not None else 0.5)
            edc = encoder.encode(q16)
        encode_s = time.perf_counter() - t0
        # as `edgecodec decompress` writes it (mode L for a grayscale source), measured as RGB
        decoded_image = decompress(edc, max_pixels=max_pixels)
        decoded = np.array(decoded_image.convert("RGB"))
    except EdgecodecError as exc:
        raise WebError(400, str(exc)) from None
    except ValueError as exc:
        raise WebError(400, str(exc)) from None

    def entry(name: str, label: str, file: bytes, dec: np.ndarray, quality_value: float, fits: bool,
              seconds: float, extension: str, png: bytes | None = None) -> dict[str, Any]:
        return {"codec": name, "label": label, "bytes": len(file), "bpp": 8 * len(file) / pixels,
                "quality": quality_value, "fits": fits, "encode_s": seconds, "extension": extension,
                "mime": MIME[name], **metrics(rgb, dec, lpips), "file": _b64(file), "png": _b64(png or _png(dec)),
                "region_psnr": None if roi is None else _finite(psnr(crop_region(rgb, roi), crop_region(dec, roi)))}

    results = [entry("edgecodec", f"edgecodec ({model})", edc, decoded, round(q16 / 65535, 4),
                     requested is None or len(edc) <= requested, encode_s, ".edc", _png(decoded_image))]
    target = len(edc)  # the classical codecs get the same budget: closest size that does not exceed it
    skipped: list[dict[str, str]] = []  # codecs that cannot code this image, with why
    for name in CLASSICAL:
        codec = classical.get_codec(name)
        if not codec.available():
            continue
        _check_stop(stop)
        t0 = time.perf_counter()
        try:
            q, file, fits = classical.encode_to_size(codec, rgb, target)
            seconds = time.perf_counter() - t0
            dec = codec.decode(file)
        except (ValueError, OSError, RuntimeError) as exc:
            # A format's own limits (WebP: 16,383 pixels a side; x265 refused a 3 x 17,000 image):
            # that codec's row is left out and said why, rather than the whole comparison failing (500).
            skipped.append({"codec": name, "label": codec.label, "reason": str(exc) or type(exc).__name__})
            continue
        results.append(entry(name, codec.label, file, dec, q, fits, seconds, codec.extension))
    return {"width": width, "height": height, "pixels": pixels, "model": model,
            "source": {"format": source_format, "conversions": conversion_names(prepared.conversions,
                                                                                prepared.bit_depth)},
            "requested_bytes": requested, "target_bytes": target, "roi": roi,
            "roi_quality": None if roi is None else roi_quality, "original_png": _b64(_png(rgb)),
            "results": results, "skipped": skipped, "elapsed_s": time.perf_counter() - start}


async def _read_upload(request: Request, max_bytes: int, limit: str) -> bytes:
    """The request body, counted as it arrives (a lying Content-Length gains nothing): 413 past
    ``max_bytes``, 408 when nothing arrives for UPLOAD_STALL_S, 499 when the client goes away."""
    from starlette.requests import ClientDisconnect

    body = bytearray()
    chunks = request.stream()
    try:
        while True:
            with anyio.fail_after(UPLOAD_STALL_S):
                try:
                    chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    return bytes(body)
            body += chunk
            if len(body) > max_bytes:
                raise WebError(413, f"file too large: over this server's upload limit of {limit}")
    except ClientDisconnect:
        raise WebError(CLIENT_GONE, "the client went away during the upload") from None
    except TimeoutError:
        raise WebError(408, f"the upload stalled: nothing arrived for {UPLOAD_STALL_S:g} s") from None
    finally:
        await chunks.aclose()


def _parameter_problem(error: dict[str, Any]) -> str:
    """One of FastAPI's validation errors as "quality: Input should be a valid number, got 'abc'"."""
    name = ".".join(str(part) for part in error.get("loc", ())[1:]) or "request"
    got = f", got {error['input']!r}" if "input" in error else ""
    return f"{name}: {error.get('msg', 'invalid value')}{got}"


def create_app(max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 1e6), max_pixels: int = DEFAULT_MAX_PIXELS,
               workers: int | None = None, loopback_only: bool = False,
               allowed_hosts: Sequence[str] = ()) -> FastAPI:
    """The application. ``workers``: comparisons run at once (default: CPU cores, at least 2).
    ``loopback_only``: answer only requests addressed to this machine's loopback or to
    ``allowed_hosts`` (SameOriginOnly).

    Sets torch to one intra-op thread for the process: requests run in parallel threads instead,
    and torch's thread count is process-wide, so one request leaving the codec's single_thread()
    section (which keeps the hyperprior's float order equal on both sides of the channel) would
    otherwise change it under another request still inside.
    """
    import torch

    torch.set_num_threads(1)
    app = FastAPI(title="edgecodec", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(SameOriginOnly, loopback_only=loopback_only, allowed_hosts=allowed_hosts)
    limiter = anyio.CapacityLimiter(workers or max(2, os.cpu_count() or 1))
    metrics = _Metrics()
    app.state.limits = {"max_upload_bytes": max_upload_bytes, "max_pixels": max_pixels}
    app.state.busy = 0  # comparisons in progress or queued (serve's Ctrl+C message)

    @app.exception_handler(WebError)
    async def web_error(request: Request, exc: WebError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # An unknown path or a wrong method: {"error": ...} as every other answer, not {"detail": ...}.
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(request: Request, exc: RequestValidationError) -> JSONResponse:
        # A parameter of the wrong type (quality=abc, lpips=maybe): 400 {"error": ...} as every other
        # bad parameter (the module's documented answer), not FastAPI's 422 {"detail": [...]}, which
        # the page showed as "[object Object]".
        return JSONResponse({"error": "; ".join(map(_parameter_problem, exc.errors())) or "bad request"},
                            status_code=400)

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/info")
    async def info() -> dict[str, Any]:
        def gather() -> dict[str, Any]:
            from .. import zoo
            from ..eval import classical

            models = []
            for entry in zoo.list_models():
                if entry.problem:  # an unreadable card: not offered
                    continue
                card = entry.card
                models.append({"name": entry.name, "summary": card.get("summary", ""),
                               "default": entry.name == zoo.DEFAULT_MODEL})
            codecs = [classical.get_codec(n) for n in CLASSICAL if classical.get_codec(n).available()]
            # codec_labels: the page names the codecs that will run (its progress line named all five)
            return {"version": __version__, "models": models, "default_model": zoo.DEFAULT_MODEL,
                    "codecs": [c.name for c in codecs], "codec_labels": [c.label for c in codecs],
                    **app.state.limits}

        # Not behind the comparisons' limiter: a page loaded while they run gets its model list at once.
        return await anyio.to_thread.run_sync(gather)

    @app.post("/api/compress")
    async def compress(request: Request, model: str | None = None, quality: float | None = None,
                       target_size: str | None = None, lpips: bool = False, roi: str | None = None,
                       roi_quality: float | None = None) -> JSONResponse:
        if quality is not None and target_size:
            raise WebError(400, "give a quality or a target size, not both")
        if target_size is not None and not target_size.strip():
            raise WebError(400, "target_size is empty: give a size such as 40KB or 12000")
        if model is not None and not model.strip():  # `model=$MODEL` unset: refused as the CLI's --model "" is
            raise WebError(400, "model is empty: give a model's name (GET /api/info lists them), or leave "
                                "model out for the default")
        for name, value in (("quality", quality), ("roi_quality", roi_quality)):
            if value is not None and not 0.0 <= value <= 1.0:
                raise WebError(400, f"{name} must be between 0 and 1, got {value}")
        try:
            region_of_interest = argtypes.region(roi) if roi else None
        except argparse.ArgumentTypeError as exc:
            raise WebError(400, f"roi: {exc}") from None
        if roi_quality is not None and region_of_interest is None:  # it was ignored in silence
            raise WebError(400, "roi_quality is the quality of a region: give roi=LEFT,TOP,WIDTH,HEIGHT too")
        roi_quality = 1.0 if roi_quality is None else roi_quality  # the region at the top quality by default
        if request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
            # curl -F / an HTML form: the image is inside the form, and was refused as "not an image"
            raise WebError(400, "send the image file itself as the request body (curl --data-binary @photo.png), "
                                "not as a form upload (curl -F)")
        limit = f"{_size(max_upload_bytes)} (edgecodec serve --max-upload-mb)"
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_upload_bytes:
            raise WebError(413, f"file too large: {_size(int(declared))} is over this server's upload limit of {limit}")
        app.state.busy += 1  # from the upload on: Ctrl+C's message counts one still arriving
        try:
            body = await _read_upload(request, max_upload_bytes, limit)
            gone = threading.Event()

            async def watch_client() -> None:
                while not await request.is_disconnected():
                    await anyio.sleep(DISCONNECT_POLL_S)
                gone.set()

            # Caught inside the task group and raised after it: anyio would wrap it in an ExceptionGroup.
            outcome: dict[str, Any] = {}
            async with anyio.create_task_group() as group:
                group.start_soon(watch_client)
                try:
                    outcome["result"] = await anyio.to_thread.run_sync(
                        lambda: compare(body, model=model, quality=quality, target_size=target_size,
                                        lpips=lpips, max_pixels=max_pixels, metrics=metrics,
                                        roi=region_of_interest, roi_quality=roi_quality, stop=gone.is_set),
                        limiter=limiter)
                except Exception as exc:  # noqa: BLE001 - re-raised below
                    outcome["error"] = exc
                group.cancel_scope.cancel()
        finally:
            app.state.busy -= 1
        if "error" in outcome:
            raise outcome["error"]
        return JSONResponse(outcome["result"])

    return app
