"""The comparison page in a real browser: Debian's headless Chromium driven by Playwright.

Needs /usr/bin/chromium (apt-get install chromium); Playwright's own browser downloads are never
used. Set EDGECODEC_WEB_SCREENSHOT=docs/web.png to refresh the screenshot in the docs.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import edgecodec

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
W, H = 256, 192
TIMEOUT_MS = 90_000

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="headless Chromium not installed at /usr/bin/chromium "
                                       "(apt-get install chromium chromium-driver)")


@pytest.fixture(scope="module")
def server():
    import uvicorn

    from edgecodec.web.app import create_app

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(max_upload_bytes=2_000_000, max_pixels=1_000_000),
                            log_level="warning", lifespan="off")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
        pg = context.new_page()
        pg.set_default_timeout(TIMEOUT_MS)
        pg.goto(server)
        pg.wait_for_selector("#model option", state="attached")
        yield pg
        context.close()
        browser.close()


@pytest.fixture(scope="module")
def crop_path(kodak, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("browser") / "kodim05_crop.png"
    with Image.open(kodak / "kodim05.png") as img:
        img.convert("RGB").crop((300, 200, 300 + W, 200 + H)).save(path)
    return path


def _edgecodec_setting(page) -> str:
    return page.inner_text("#results tr:first-child td:nth-child(7)")


def test_rejects_a_text_file_with_a_message(page, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    page.set_input_files("#file", str(text))
    page.wait_for_selector("#error", state="visible")
    assert "not an image" in page.inner_text("#error")
    page.wait_for_selector("#status", state="hidden")


def test_upload_compare_drag_download(page, crop_path, tmp_path):
    page.set_input_files("#file", str(crop_path))
    assert page.is_visible("#status")  # progress is shown while the server works
    page.wait_for_function("document.querySelectorAll('#results tr').length === 6")
    page.wait_for_selector("#status", state="hidden")
    assert page.is_hidden("#error")
    assert _edgecodec_setting(page) == "quality 0.500"
    labels = page.eval_on_selector_all("#results tr td:first-child", "tds => tds.map(t => t.textContent)")
    assert labels[1:] == ["JPEG", "WebP", "AVIF", "JPEG XL", "HEIC"] and labels[0].startswith("edgecodec")

    # change the quality: a new comparison runs when the slider is released
    page.eval_on_selector("#quality", "el => { el.value = '0.8'; el.dispatchEvent(new Event('input'));"
                                      " el.dispatchEvent(new Event('change')); }")
    assert page.inner_text("#quality-value") == "0.80"
    page.wait_for_function("document.querySelector('#results tr td:nth-child(7)').textContent === 'quality 0.800'")
    page.wait_for_selector("#status", state="hidden")

    # drag the split from the middle to a quarter of the width
    box = page.locator("#stage").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] / 2, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.35, y, steps=5)
    page.mouse.move(box["x"] + box["width"] * 0.25, y, steps=5)
    page.mouse.up()
    assert float(page.input_value("#split")) == pytest.approx(25, abs=1.5)
    assert "75" in page.eval_on_selector("#left", "el => el.style.clipPath")

    # show AVIF on the right, zoom in
    original = page.get_attribute("#left", "src")
    page.click("#pick-avif")
    assert "AVIF" in page.inner_text("#tag-right")
    avif = page.get_attribute("#right", "src")
    page.select_option("#zoom", "2")
    assert page.locator("#stage").bounding_box()["width"] > box["width"] * 0.99
    page.click("#pick-edgecodec")

    # two codecs side by side: AVIF on the left, against edgecodec on the right; then back
    page.click("#left-avif")
    assert page.get_attribute("#left", "src") == avif != original
    assert page.inner_text("#tag-left").startswith("AVIF: ") and page.inner_text("#tag-right").startswith("edgecodec")
    assert page.get_attribute("#left-avif", "class") == "on" and page.get_attribute("#left-original", "class") == ""
    assert "75" in page.eval_on_selector("#left", "el => el.style.clipPath")  # the split stays where it was
    page.click("#left-original")
    assert page.get_attribute("#left", "src") == original and page.inner_text("#tag-left") == "original"

    # download the .edc: it decodes to the uploaded image's size, at the chosen quality
    with page.expect_download() as info:
        page.click("#download-edc")
    download = info.value
    assert download.suggested_filename == "kodim05_crop.edc"
    data = Path(download.path()).read_bytes()
    header = edgecodec.read_header(data)
    assert (header.width, header.height) == (W, H)
    assert header.quality == pytest.approx(0.8, abs=1e-4)
    decoded = edgecodec.decompress(data)
    assert decoded.size == (W, H)
    with page.expect_download() as info:
        page.click("#download-png")
    with Image.open(info.value.path()) as png:
        assert np.array_equal(np.array(png.convert("RGB")), np.array(decoded))

    page.click("#left-jpeg")  # the screenshot: JPEG against edgecodec, files of the same size
    page.select_option("#zoom", "2")
    page.fill("#split", "50")
    page.dispatch_event("#split", "input")
    shot = Path(os.environ.get("EDGECODEC_WEB_SCREENSHOT") or tmp_path / "web.png")
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    with Image.open(shot) as img:
        assert img.width >= 1000


def test_a_region_of_interest_typed_on_the_page(page):
    """After the comparison above (quality 0.8): a region coded at its own quality, and every
    codec's PSNR in it beside its whole-image PSNR."""
    page.fill("#roi", "64, 0, 64, 64")
    page.eval_on_selector("#roi-quality", "el => { el.value = '0.95'; el.dispatchEvent(new Event('input')); }")
    assert page.inner_text("#roi-quality-value") == "0.95"
    page.press("#roi", "Enter")
    page.wait_for_function("document.querySelector('#results tr td:nth-child(7)').textContent"
                           " === 'quality 0.800, region 0.95'")
    page.wait_for_selector("#status", state="hidden")
    psnr_cells = page.eval_on_selector_all("#results tr td:nth-child(4)", "tds => tds.map(t => t.textContent)")
    assert len(psnr_cells) == 6 and all(re.fullmatch(r"[0-9.]+ \(region [0-9.]+\)", c) for c in psnr_cells)
    page.fill("#roi", "5000,0,1,1")  # outside the image: the server's reason is shown
    page.press("#roi", "Enter")
    page.wait_for_selector("#error", state="visible")
    assert "not within the" in page.inner_text("#error")
    page.fill("#roi", "")


def test_a_region_dragged_with_shift_is_outlined_and_coded(page):
    """Shift + drag over the image chooses the region (a plain drag moves the split): the field gets
    its rectangle in image pixels, the comparison runs with it, and the outline shows it."""
    page.fill("#roi", "")
    split = page.input_value("#split")
    box = page.locator("#stage").bounding_box()
    x0, y0 = box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.25
    page.keyboard.down("Shift")
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + box["width"] * 0.4, y0 + box["height"] * 0.5, steps=4)
    page.mouse.up()
    page.keyboard.up("Shift")
    page.wait_for_function("document.querySelector('#results tr td:nth-child(7)').textContent.includes('region')")
    page.wait_for_selector("#status", state="hidden")
    left, top, width, height = (int(v) for v in page.input_value("#roi").split(","))
    expected = (W * 0.25, H * 0.25, W * 0.4, H * 0.5)
    assert all(abs(a - b) <= 2 for a, b in zip((left, top, width, height), expected)), (left, top, width, height)
    assert page.input_value("#split") == split
    assert page.is_visible("#roi-box")
    outline = page.locator("#roi-box").bounding_box()
    assert abs(outline["x"] - x0) <= 3 and abs(outline["width"] - box["width"] * 0.4) <= 3
    page.fill("#roi", "")
    page.press("#roi", "Enter")  # no region: no outline
    page.wait_for_function("!document.querySelector('#results tr td:nth-child(7)').textContent.includes('region')")
    assert page.is_hidden("#roi-box")
