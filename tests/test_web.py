"""The comparison page's API (edgecodec serve) through FastAPI's TestClient, with the shipped model."""

from __future__ import annotations

import argparse
import base64
import io
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the web page needs fastapi (pip install -r requirements.txt)")
from fastapi.testclient import TestClient  # noqa: E402

import edgecodec  # noqa: E402
from edgecodec.eval import classical  # noqa: E402
from edgecodec.web import app as web  # noqa: E402
from edgecodec.web.command import add_serve_parser  # noqa: E402

from conftest import SHIPPED, assert_one_error_line, cli_env, psnr  # noqa: E402
from edgecodec import cli  # noqa: E402
from edgecodec.zoo import DEFAULT_MODEL  # noqa: E402

W, H = 192, 128
UPLOAD_LIMIT = 300_000
PIXEL_LIMIT = 200_000


@pytest.fixture(scope="module")
def crop_rgb(kodim23) -> np.ndarray:
    with Image.open(kodim23) as img:
        return np.array(img.convert("RGB").crop((200, 150, 200 + W, 150 + H)))


@pytest.fixture(scope="module")
def crop_png(crop_rgb) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(crop_rgb).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def client():
    with TestClient(web.create_app(max_upload_bytes=UPLOAD_LIMIT, max_pixels=PIXEL_LIMIT, workers=2)) as c:
        yield c


def _decoded(entry: dict) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(entry["png"]))) as img:
        return np.array(img.convert("RGB"))


def test_page_and_assets_are_local(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    texts = [page.text]
    for asset in ("/static/app.js", "/static/style.css"):
        assert asset in page.text
        r = client.get(asset)
        assert r.status_code == 200
        texts.append(r.text)
    for text in texts:  # no CDN, no external fonts: the page works offline
        assert not re.search(r"(src|href)=[\"']?(https?:)?//", text)
        assert "cdn" not in text.lower()


def test_info_lists_models_and_limits(client):
    info = client.get("/api/info").json()
    assert SHIPPED in [m["name"] for m in info["models"]]
    assert info["default_model"] == DEFAULT_MODEL
    assert set(info["codecs"]) == set(classical.available_codecs())
    assert (info["max_upload_bytes"], info["max_pixels"]) == (UPLOAD_LIMIT, PIXEL_LIMIT)


def test_compress_at_quality(client, crop_png, crop_rgb):
    r = client.post(f"/api/compress?quality=0.6&model={SHIPPED}&lpips=1", content=crop_png)
    assert r.status_code == 200, r.text
    data = r.json()
    assert (data["width"], data["height"]) == (W, H)
    results = {e["codec"]: e for e in data["results"]}
    assert set(results) == {"edgecodec", *classical.available_codecs()}
    # the pinned Pillow, pillow-jxl-plugin and pillow-heif have all five
    assert {"jpeg", "webp", "avif", "jxl", "heic"} <= set(results)
    edc = base64.b64decode(results["edgecodec"]["file"])
    assert data["target_bytes"] == len(edc) == results["edgecodec"]["bytes"]
    assert results["edgecodec"]["quality"] == pytest.approx(0.6, abs=1e-4)
    # the .edc decodes to the image size, and to the reconstruction shown
    decoded = edgecodec.decompress(edc)
    assert decoded.size == (W, H)
    assert np.array_equal(np.array(decoded), _decoded(results["edgecodec"]))
    for name in ("jpeg", "webp", "avif", "jxl", "heic"):
        e = results[name]
        file = base64.b64decode(e["file"])
        assert e["bytes"] == len(file) <= data["target_bytes"] and e["fits"]
        assert e["bpp"] == pytest.approx(8 * len(file) / (W * H))
        assert np.array_equal(classical.get_codec(name).decode(file), _decoded(e))
    for e in results.values():
        assert e["psnr"] > 10
        assert e["ms_ssim"] is None  # 128 px high: too small for 5 MS-SSIM scales
        assert 0 <= e["st_lpips"] < 1
    assert np.array_equal(np.array(Image.open(io.BytesIO(base64.b64decode(data["original_png"])))), crop_rgb)


def test_a_region_of_interest_is_coded_at_its_quality_and_measured_alone(client, crop_png, crop_rgb):
    plain = {e["codec"]: e for e in client.post(f"/api/compress?quality=0.2&model={SHIPPED}",
                                                content=crop_png).json()["results"]}
    r = client.post(f"/api/compress?quality=0.2&model={SHIPPED}&roi=64,0,64,64&roi_quality=0.9", content=crop_png)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["roi"] == [64, 0, 64, 64] and data["roi_quality"] == 0.9
    results = {e["codec"]: e for e in data["results"]}
    edc = base64.b64decode(results["edgecodec"]["file"])
    assert edgecodec.codec.Container.from_bytes(edc).header.version == 7  # the file carries the map
    assert results["edgecodec"]["bytes"] > plain["edgecodec"]["bytes"]
    region = _decoded(results["edgecodec"])[:64, 64:128]
    assert results["edgecodec"]["region_psnr"] == pytest.approx(psnr(region, crop_rgb[:64, 64:128]))
    assert results["edgecodec"]["region_psnr"] > plain["edgecodec"]["psnr"] + 2
    assert all(e["region_psnr"] is not None for e in results.values())
    assert all(e["region_psnr"] is None for e in plain.values())


def test_compress_to_target_size(client, crop_png):
    target = 2000
    r = client.post(f"/api/compress?target_size={target}", content=crop_png)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["requested_bytes"] == target
    edc_bytes = data["results"][0]["bytes"]
    assert data["results"][0]["codec"] == "edgecodec"
    assert edc_bytes <= 1.03 * target  # the rate search's tolerance
    assert all(e["bytes"] <= edc_bytes for e in data["results"])
    assert all(e["st_lpips"] is None for e in data["results"])  # not asked for


@pytest.mark.parametrize("fmt", ["HEIF", "JXL"])
def test_phone_and_jpeg_xl_uploads_are_read(client, crop_rgb, fmt):
    """A HEIC photo (what phones save) and a JPEG XL file upload like a PNG."""
    import pillow_heif
    import pillow_jxl  # noqa: F401  (for Pillow to write JPEG XL here)

    pillow_heif.register_heif_opener()
    buf = io.BytesIO()
    Image.fromarray(crop_rgb).save(buf, format=fmt, quality=90)
    r = client.post(f"/api/compress?quality=0.3&model={SHIPPED}", content=buf.getvalue())
    assert r.status_code == 200, r.text
    data = r.json()
    assert (data["width"], data["height"]) == (W, H)
    original = np.array(Image.open(io.BytesIO(base64.b64decode(data["original_png"]))))
    assert np.abs(original.astype(int) - crop_rgb).mean() < 3  # the upload's own (lossy) pixels


def test_oversize_upload_is_413(client, crop_rgb):
    big = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(big).save(buf, format="PNG")
    assert len(buf.getvalue()) > UPLOAD_LIMIT
    r = client.post("/api/compress", content=buf.getvalue())
    assert r.status_code == 413
    assert "too large" in r.json()["error"] and "--max-upload-mb" in r.json()["error"]
    # no Content-Length (chunked): refused while streaming
    r = client.post("/api/compress", content=iter([buf.getvalue()[i:i + 65536]
                                                  for i in range(0, len(buf.getvalue()), 65536)]))
    assert r.status_code == 413 and "too large" in r.json()["error"]


def test_too_many_pixels_is_413(client):
    buf = io.BytesIO()
    Image.new("RGB", (1000, 500), (90, 120, 200)).save(buf, format="PNG")  # small file, 500,000 pixels
    assert len(buf.getvalue()) < UPLOAD_LIMIT
    r = client.post("/api/compress", content=buf.getvalue())
    assert r.status_code == 413
    assert "500,000 pixels" in r.json()["error"] and "--max-pixels" in r.json()["error"]


def test_text_file_is_400(client):
    r = client.post("/api/compress", content=b"just some text, not an image\n" * 10)
    assert r.status_code == 400
    assert "not an image" in r.json()["error"]
    r = client.post("/api/compress", content=b"")
    assert r.status_code == 400 and "empty" in r.json()["error"]


def test_an_animated_upload_is_told_why_in_one_sentence(client):
    """An animated GIF was answered "cannot read this image: the image: 2 frames ...": the page can
    read it, edgecodec refuses to code several frames; the 400 says that, once."""
    frames = [Image.new("RGB", (32, 24), colour) for colour in ("red", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    r = client.post("/api/compress", content=buf.getvalue())
    assert r.status_code == 400
    assert r.json()["error"] == ("the image: 2 frames (an animated or multi-page GIF); edgecodec codes one "
                                 "picture: extract the frame you want first"), r.text


def test_a_form_upload_is_told_to_send_the_file_itself(client, crop_png):
    """curl -F file=@photo.png (multipart) was answered "not an image this server can read"."""
    boundary = "edgecodec-test"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"crop.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + crop_png + f"\r\n--{boundary}--\r\n".encode()
    r = client.post("/api/compress", content=form,
                    headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 400 and "--data-binary" in r.json()["error"], r.text


@pytest.mark.parametrize("query, message", [
    ("quality=1.5", "quality must be between 0 and 1"),
    ("quality=0.5&target_size=10KB", "not both"),
    ("target_size=", "target_size is empty"),  # the page's target-size mode with an empty box
    ("target_size=%20%20", "target_size is empty"),
    ("target_size=lots", "cannot parse size"),
    ("model=nope", "unknown model"),
    ("model=", "model is empty"),  # was the default model, in silence (the CLI refuses --model "")
    ("model=%20", "model is empty"),
    ("model=..%2F..%2Fetc", "invalid model name"),
    ("roi=1,2,3", "roi: expected LEFT,TOP,WIDTH,HEIGHT"),
    ("roi=0,0,5000,10", "not within the"),
    ("roi=0,0,5,5&roi_quality=2", "roi_quality must be between 0 and 1"),
    ("quality=0.5&roi_quality=0.9", "give roi=LEFT,TOP,WIDTH,HEIGHT too"),  # ignored in silence
    ("quality=abc", "quality: Input should be a valid number"),  # was FastAPI's 422 {"detail": [...]}
    ("quality=", "quality: Input should be a valid number"),
    ("lpips=maybe", "lpips: Input should be a valid boolean"),
])
def test_bad_parameters_are_400(client, crop_png, query, message):
    r = client.post(f"/api/compress?{query}", content=crop_png)
    assert r.status_code == 400 and message in r.json()["error"]


def test_a_decode_equal_to_the_original_is_marked_identical(client):
    """PSNR is infinite for an exact decode: JSON has no infinity, so it is null with identical
    true (the page shows "∞ (identical)" and counts it best), never null alone as "not measured"."""
    buf = io.BytesIO()
    Image.new("RGB", (W, H)).save(buf, format="PNG")  # all black: several codecs decode it exactly
    r = client.post("/api/compress?quality=0.3", content=buf.getvalue())
    assert r.status_code == 200, r.text
    entries = r.json()["results"]
    for e in entries:
        exact = not _decoded(e).any()
        assert e["identical"] is exact and (e["psnr"] is None) is exact, (e["codec"], e["psnr"])
    assert any(e["identical"] for e in entries)


def test_pillows_decompression_bomb_limit_is_reported_as_the_servers(client):
    png = io.BytesIO()
    Image.new("RGB", (1, 1)).save(png, format="PNG")
    data = bytearray(png.getvalue())
    data[16:24] = (20000).to_bytes(4, "big") * 2  # IHDR width, height: 400 MP, past Pillow's bomb check
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    r = client.post("/api/compress", content=bytes(data))
    assert r.status_code == 413
    error = r.json()["error"]
    assert f"{PIXEL_LIMIT:,} pixels" in error and "--max-pixels" in error and "decompression bomb" not in error


def test_a_grayscale_upload_shows_and_measures_what_decompress_gives(client, crop_rgb):
    """The page decoded a grayscale source's .edc as colour (up to 19 levels of tint) and measured
    that, where `edgecodec decompress` writes mode L and `edgecodec metrics` measures it."""
    from edgecodec.metrics import psnr as measured_psnr

    gray = Image.fromarray(crop_rgb).convert("L")
    upload = io.BytesIO()
    gray.save(upload, format="PNG")
    r = client.post(f"/api/compress?quality=0.5&model={SHIPPED}", content=upload.getvalue())
    assert r.status_code == 200, r.text
    entry = next(e for e in r.json()["results"] if e["codec"] == "edgecodec")
    decoded = edgecodec.decompress(base64.b64decode(entry["file"]))
    with Image.open(io.BytesIO(base64.b64decode(entry["png"]))) as shown:
        assert shown.mode == decoded.mode == "L" and np.array_equal(np.array(shown), np.array(decoded))
    reference = np.array(gray.convert("RGB"))
    assert entry["psnr"] == pytest.approx(measured_psnr(reference, np.array(decoded.convert("RGB"))), abs=1e-9)


def test_a_server_limit_above_pillows_reads_the_image_instead_of_blaming_the_limit():
    """--max-pixels above Pillow's own limit: a 196 MP header was refused 413 "over this server's
    limit of 1,000,000,000 pixels"; Pillow's limit now yields to the server's."""
    png = io.BytesIO()
    Image.new("RGB", (1, 1)).save(png, format="PNG")
    data = bytearray(png.getvalue())
    data[16:24] = (14000).to_bytes(4, "big") * 2  # 196 MP: over twice Pillow's limit, under the server's
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    with TestClient(web.create_app(max_pixels=10**9, workers=1)) as c:
        r = c.post("/api/compress", content=bytes(data))
    assert r.status_code == 400 and "cannot read this image" in r.json()["error"], r.text  # no pixel data


def test_a_reverse_proxys_name_and_https_page_are_let_through_when_allowed(crop_png):
    """Behind a proxy that passes its own Host (Caddy; nginx with proxy_set_header Host) and ends
    TLS (the page's Origin is https, the request http), every request was refused 403: --allow-host
    names the proxy's host, and the origin check compares host and port, not the scheme."""
    app = web.create_app(max_pixels=PIXEL_LIMIT, workers=1, loopback_only=True, allowed_hosts=["Proxy.example"])
    with TestClient(app, base_url="http://proxy.example") as c:
        assert c.get("/").status_code == 200
        r = c.post("/api/compress", content=b"not an image", headers={"Origin": "https://proxy.example"})
        assert r.status_code == 400 and "not an image" in r.json()["error"]
        r = c.post("/api/compress", content=b"not an image", headers={"Origin": "https://evil.example"})
        assert r.status_code == 403
    with TestClient(app, base_url="http://other.example") as c:
        r = c.get("/")
        assert r.status_code == 403 and "--allow-host" in r.json()["error"]


def test_uploads_that_stall_or_are_abandoned_end_cleanly(monkeypatch):
    """A client gone mid-upload was an ASGI traceback (ClientDisconnect); one that stalled held the
    request, and a Ctrl+C's graceful stop, for as long as it liked."""
    import anyio
    from starlette.requests import ClientDisconnect

    class Upload:
        def __init__(self, then):
            self.then = then

        async def stream(self):
            yield b"first bytes"
            await self.then()

    async def disconnect():
        raise ClientDisconnect()

    async def stall():
        await anyio.sleep(60)

    monkeypatch.setattr(web, "UPLOAD_STALL_S", 0.2)
    for then, status in ((disconnect, web.CLIENT_GONE), (stall, 408)):
        start = time.perf_counter()
        with pytest.raises(web.WebError) as refused:
            anyio.run(web._read_upload, Upload(then), 10**6, "1 MB")
        assert refused.value.status == status and time.perf_counter() - start < 5


def test_a_comparison_stops_between_stages_once_nobody_waits(crop_png, monkeypatch):
    """stop() true before the work: nothing is read; true after the edgecodec encode: no
    classical codec runs (each takes seconds on a large image)."""
    metrics = web._Metrics()
    with pytest.raises(web.WebError) as info:
        web.compare(crop_png, model=None, quality=0.5, target_size=None, lpips=False, max_pixels=PIXEL_LIMIT,
                    metrics=metrics, stop=lambda: True)
    assert info.value.status == web.CLIENT_GONE

    def no_classical(*args, **kwargs):
        raise AssertionError("a classical codec ran for a client that went away")
    monkeypatch.setattr(classical, "encode_to_size", no_classical)
    asked = []

    def gone_after_first_check() -> bool:
        asked.append(1)
        return len(asked) > 1
    with pytest.raises(web.WebError) as info:
        web.compare(crop_png, model=None, quality=0.5, target_size=None, lpips=False, max_pixels=PIXEL_LIMIT,
                    metrics=metrics, stop=gone_after_first_check)
    assert info.value.status == web.CLIENT_GONE and len(asked) == 2


def _slow_compare(seen: dict):
    """A stand-in for compare that runs until stop() or 20 s, and records how it ended."""
    def slow(data, stop=None, **kwargs):
        start = time.perf_counter()
        while time.perf_counter() - start < 20:
            if stop is not None and stop():
                seen["stopped_after_s"] = time.perf_counter() - start
                raise web.WebError(web.CLIENT_GONE, "gone")
            time.sleep(0.05)
        seen["ran_to_the_end"] = True
        return {"ok": True}
    return slow


def test_a_client_that_goes_away_stops_its_comparison(crop_png, monkeypatch):
    """The page aborts its request whenever a setting changes: the server notices the closed
    connection and the comparison stops, instead of holding a worker for its whole run."""
    import uvicorn

    seen: dict = {}
    monkeypatch.setattr(web, "compare", _slow_compare(seen))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(web.create_app(workers=1), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(100):
            if server.started:
                break
            time.sleep(0.1)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(b"POST /api/compress?quality=0.5 HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Length: %d\r\n\r\n" % len(crop_png) + crop_png)
            time.sleep(1.0)  # the comparison is running
        for _ in range(100):
            if seen:
                break
            time.sleep(0.1)
        assert "stopped_after_s" in seen and seen["stopped_after_s"] < 5, seen
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def test_info_does_not_queue_behind_comparisons(crop_png, monkeypatch):
    """With every worker busy, /api/info (the page's model list) still answers at once."""
    seen: dict = {}
    monkeypatch.setattr(web, "compare", lambda data, **kwargs: time.sleep(3) or {"ok": True})
    with TestClient(web.create_app(workers=1)) as c:
        busy = threading.Thread(target=lambda: seen.setdefault("r", c.post("/api/compress", content=crop_png)))
        busy.start()
        time.sleep(0.5)
        start = time.perf_counter()
        assert c.get("/api/info").status_code == 200
        assert time.perf_counter() - start < 2
        busy.join(10)
    assert seen["r"].status_code == 200


def test_two_requests_at_once_both_succeed(client, crop_png):
    results: dict[int, object] = {}

    def post(i: int) -> None:
        try:
            results[i] = client.post(f"/api/compress?quality={0.3 + 0.3 * i}", content=crop_png)
        except Exception as exc:  # noqa: BLE001 - reported below
            results[i] = exc

    threads = [threading.Thread(target=post, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(getattr(results.get(i), "status_code", None) == 200 for i in range(2)), results
    sizes = [results[i].json()["target_bytes"] for i in range(2)]
    assert sizes[0] < sizes[1]  # each got its own quality


def test_requests_run_in_parallel_threads(crop_png, monkeypatch):
    """The CPU work runs in worker threads: two slow comparisons overlap instead of queueing."""
    def slow_compare(data, **kwargs):
        time.sleep(1.0)
        return {"ok": True}

    monkeypatch.setattr(web, "compare", slow_compare)
    with TestClient(web.create_app(workers=2)) as c:
        start = time.perf_counter()
        threads = [threading.Thread(target=lambda: c.post("/api/compress", content=crop_png)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert time.perf_counter() - start < 1.8


def test_serve_parser_defaults_to_loopback():
    parser = argparse.ArgumentParser()
    add_serve_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve"])
    assert (args.host, args.port, args.max_upload_mb) == ("127.0.0.1", 8000, 20.0)
    assert args.max_pixels > 0 and callable(args.func)
    args = parser.parse_args(["serve", "--port", "0", "--max-upload-mb", "5", "--max-pixels", "1000"])
    assert (args.port, args.max_upload_mb, args.max_pixels) == (0, 5.0, 1000)


@pytest.mark.parametrize("args", [["--max-upload-mb", "0"], ["--max-upload-mb", "nan"], ["--max-upload-mb", "inf"],
                                  ["--max-upload-mb", "0.0000001"],  # was taken: 0 bytes, every upload refused
                                  ["--max-pixels", "0"], ["--workers", "0"], ["--port", "70000"],
                                  ["--host", ""]])  # `--host "$HOST"` unset: "cannot listen on :0: Name or service ..."
def test_serve_refuses_bad_limits(args, capsys, monkeypatch):
    def never(*_):  # a limit let through would start a server that runs until killed
        raise AssertionError("the server would start")
    monkeypatch.setattr("edgecodec.web.command.listening_socket", never)
    try:
        code = cli.main(["serve", *args])
    except SystemExit as exc:  # argparse's own check: a usage line, then the error
        code = exc.code
    assert code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "error:" in last and args[0] in last and "Traceback" not in last


def test_serve_refuses_a_port_in_use(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["serve", "--port", str(port)]) == 2
    assert_one_error_line(capsys.readouterr().err, "in use", f"127.0.0.1:{port}")
    assert capsys.readouterr().out == ""  # no "open http://..." line for a server that never ran


def test_serve_on_an_address_of_another_machine_asks_for_another_host(capsys):
    """--host 192.0.2.1 (not this machine's) was told "(choose another --port)"."""
    with socket.socket() as probe:
        try:
            probe.bind(("192.0.2.1", 0))  # TEST-NET-1: no machine has it
            pytest.skip("this machine has 192.0.2.1")
        except OSError:
            pass
    assert cli.main(["serve", "--host", "192.0.2.1", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert_one_error_line(err, "192.0.2.1:0", "--host")
    assert "--port" not in err


def test_process_serve_on_port_0_prints_the_port_it_got(tmp_path):
    """`serve --port 0` takes a free port and its first line names it; the page answers there."""
    proc = subprocess.Popen([sys.executable, "-m", "edgecodec.cli", "--threads", "1", "serve", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(), cwd=tmp_path)
    try:
        line = proc.stdout.readline()
        match = re.fullmatch(r"edgecodec serve: open http://127\.0\.0\.1:(\d+)/ \(Ctrl\+C stops\)\n", line)
        assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
        assert int(match[1]) > 0
        no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        for _ in range(100):  # the socket listens once uvicorn has started
            try:
                page = no_proxy.open(f"http://127.0.0.1:{match[1]}/", timeout=10).read()
                break
            except urllib.error.URLError:
                time.sleep(0.2)
        else:
            pytest.fail("the server never answered")
        assert b"<html" in page
        base = f"http://127.0.0.1:{match[1]}"
        assert no_proxy.open(urllib.request.Request(f"{base}/", method="HEAD"), timeout=10).status == 200
        # Other pages may not use it: a form post from another site (no preflight), or DNS rebinding
        # (another name resolving to 127.0.0.1) - both ran comparisons of minutes and gigabytes.
        for headers in ({"Origin": "http://evil.example"}, {"Host": "evil.example"}, {"Origin": "null"}):
            request = urllib.request.Request(f"{base}/api/compress", data=b"not even an image", method="POST",
                                             headers={"Content-Type": "text/plain", **headers})
            with pytest.raises(urllib.error.HTTPError) as refused:
                no_proxy.open(request, timeout=10)
            assert refused.value.code == 403, headers
        for name in ("127.0.0.1", "localhost"):  # its own page's request reaches the comparison
            own = urllib.request.Request(f"{base}/api/compress", data=b"not even an image", method="POST",
                                         headers={"Origin": f"http://{name}:{match[1]}", "Host": f"{name}:{match[1]}"})
            with pytest.raises(urllib.error.HTTPError) as answered:
                no_proxy.open(own, timeout=10)
            assert answered.value.code == 400, name
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_ctrl_c_waits_for_comparisons_and_a_second_stops_at_once(tmp_path, crop_png):
    """First Ctrl+C: a line saying what the server waits for; second: it stops at once, exit 130,
    no traceback (uvicorn's forced exit printed two and still waited for the worker thread)."""
    import signal

    script = tmp_path / "serve.py"
    script.write_text("import sys, time\n"
                      "from edgecodec import cli\n"
                      "from edgecodec.web import app\n"
                      "app.compare = lambda data, **kw: time.sleep(60) or {}\n"  # a comparison that takes a minute
                      "sys.exit(cli.main(['serve', '--port', '0']))\n")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=cli_env(), cwd=tmp_path)
    try:
        port = re.search(r":(\d+)/", proc.stdout.readline())[1]
        no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        for _ in range(100):
            try:
                no_proxy.open(f"http://127.0.0.1:{port}/api/info", timeout=10).read()
                break
            except urllib.error.URLError:
                time.sleep(0.2)

        def post() -> None:
            try:
                no_proxy.open(urllib.request.Request(f"http://127.0.0.1:{port}/api/compress", data=crop_png),
                              timeout=60).read()
            except (urllib.error.URLError, ConnectionError, OSError):
                pass  # the server stops under it
        threading.Thread(target=post, daemon=True).start()
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        time.sleep(1.5)
        assert proc.poll() is None  # still waiting for the comparison
        start = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
        assert time.perf_counter() - start < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "stopping after the 1 comparison(s) in progress (Ctrl+C again stops at once)" in err, err
    assert "Traceback" not in err and err.rstrip().endswith("edgecodec serve: stopped"), err


def test_encode_to_size_is_closest_not_exceeding(crop_rgb):
    codec = classical.get_codec("jpeg")
    target = 3000
    q, data, fits = classical.encode_to_size(codec, crop_rgb, target)
    assert fits and len(data) <= target
    assert len(codec.encode(crop_rgb, q + 1)) > target
    q, data, fits = classical.encode_to_size(codec, crop_rgb, 10)  # below any JPEG file
    assert not fits and q == codec.quality_range[0]


def test_unknown_paths_and_methods_answer_an_error_field(client):
    """404 and 405 carry {"error": ...} like every other answer (were FastAPI's {"detail": ...})."""
    r = client.get("/api/nothing")
    assert r.status_code == 404 and r.json() == {"error": "Not Found"}
    r = client.get("/api/compress")
    assert r.status_code == 405 and r.json() == {"error": "Method Not Allowed"}
    assert "POST" in r.headers["allow"]


def test_a_target_size_past_the_float_range_asks_for_the_top_quality(client, crop_png):
    """400 digits: every file fits, so the top quality (was an OverflowError: 500 and a traceback)."""
    r = client.post("/api/compress?target_size=" + "9" * 400, content=crop_png)
    assert r.status_code == 200
    edc = r.json()["results"][0]
    assert edc["codec"] == "edgecodec" and edc["quality"] == 1.0 and edc["fits"]


def test_a_declared_upload_of_gigabytes_is_said_in_gb():
    assert web._size(10**11) == "100 GB" and web._size(25_000_000) == "25 MB"
    assert web._size(999_600_000) == "999.6 MB" and web._size(10**12) == "1,000 GB"  # not 1e+03


def test_a_limit_under_a_megabyte_is_said_in_kb():
    """--max-upload-mb 0.02 was refused as "over this server's upload limit of 0 MB", 0.05 as "0.1 MB"."""
    assert web._size(20_000) == "20 KB" and web._size(50_000) == "50 KB" and web._size(289_812) == "289.8 KB"
    assert web._size(999_949) == "999.9 KB" and web._size(999_950) == "1 MB" and web._size(999_950_000) == "1 GB"
    with TestClient(web.create_app(max_upload_bytes=20_000, workers=1)) as c:
        r = c.post("/api/compress", content=bytes(30_000))
    assert r.status_code == 413 and r.json()["error"] == ("file too large: 30 KB is over this server's upload "
                                                          "limit of 20 KB (edgecodec serve --max-upload-mb)")


def test_a_codec_that_cannot_code_the_image_is_left_out_with_why():
    """A 2 x 16,400 image (under the pixel limit) answered 500 "Internal Server Error", not JSON:
    WebP's encoder refuses sides over 16,383 pixels (x265 refused it too), and one codec's
    exception failed the whole comparison. Such a codec's row is left out now, and said why."""
    rng = np.random.default_rng(5)
    tall = rng.integers(0, 256, (16_400, 2, 3), dtype=np.uint8)
    # the padded size (64 x 16,448) is within 4 x this limit, as it is within the default's
    with TestClient(web.create_app(max_upload_bytes=UPLOAD_LIMIT, max_pixels=400_000, workers=1)) as client:
        r = client.post("/api/compress?quality=0.3", content=_png_bytes(tall))
        assert r.status_code == 200, r.text
        assert client.post("/api/compress?quality=0.3", content=_png_bytes(tall[:64])).json()["skipped"] == []
    body = r.json()
    codecs = [entry["codec"] for entry in body["results"]]
    skipped = {entry["codec"]: entry for entry in body["skipped"]}
    # (random pixels: Pillow's JPEG writer also fails on this shape at high qualities, "broken data stream")
    assert codecs[0] == "edgecodec" and len(codecs) > 1
    assert "webp" in skipped and "webp" not in codecs and "16383" in skipped["webp"]["reason"]
    assert skipped["webp"]["label"] == "WebP"
    assert set(codecs[1:]) | set(skipped) == set(classical.available_codecs())


def _png_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


class _NoServer:
    """serve's server class, replaced: cli.main(["serve", ...]) prints its lines and returns."""

    def __init__(self, config, app) -> None:
        pass

    def run(self, sockets) -> None:
        pass


@pytest.mark.parametrize("host, loopback", [("0.0.0.0", "127.0.0.1"), ("::", "[::1]")])
def test_serve_on_every_interface_names_an_address_a_browser_opens(host, loopback, capsys, monkeypatch):
    """--host 0.0.0.0 printed "open http://0.0.0.0:PORT/", which is no address to open (Windows'
    browsers refuse it); --host :: printed http://[::]:PORT/."""
    if host == "::":
        try:
            socket.socket(socket.AF_INET6).close()
        except OSError:
            pytest.skip("no IPv6 on this machine")
    monkeypatch.setattr("edgecodec.web.command._server_class", lambda: _NoServer)
    assert cli.main(["serve", "--host", host, "--port", "0"]) == 0
    line = capsys.readouterr().out.strip()
    match = re.match(rf"edgecodec serve: open http://{re.escape(loopback)}:(\d+)/ \(Ctrl\+C stops\); "
                     rf"it listens on every .*interface.* \({re.escape(host)}\): other machines open "
                     r"http://ADDRESS:(\d+)/ with this machine's address or name$", line)
    assert match and match[1] == match[2] and int(match[1]) > 0, line


def test_serve_names_the_codecs_it_leaves_out(capsys, monkeypatch):
    """Without pillow-jxl-plugin and pillow-heif the page promised JPEG XL and HEIC (its title and
    progress line) and nothing said why their rows never came."""
    available = classical.Codec.available
    monkeypatch.setattr(classical.Codec, "available", lambda self: self.name not in ("jxl", "heic") and
                        available(self))
    monkeypatch.setattr("edgecodec.web.command._server_class", lambda: _NoServer)
    assert cli.main(["serve", "--port", "0"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["edgecodec serve: JPEG XL and HEIC left out of the comparison: not installed here (JPEG XL: "
                   "pip install pillow-jxl-plugin; HEIC: pip install pillow-heif)"], err
    with TestClient(web.create_app()) as c:
        info = c.get("/api/info").json()
    assert "jxl" not in info["codecs"] and "HEIC" not in info["codec_labels"]
    assert info["codec_labels"] == [classical.get_codec(name).label for name in info["codecs"]]
