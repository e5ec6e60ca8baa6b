"""A real browser (Debian's headless Chromium, driven by Playwright) uses each tab of the gateway.

Screenshots land in test-artifacts/ (one per tab), for people to look at.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import png

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
        "--disable-component-update", "--disable-sync", "--disable-quic"]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM}: `make test` installs it (apt-get install chromium)")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, gateway):
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    page.goto(gateway.url, wait_until="load")
    page.wait_for_selector("button[role=tab]", timeout=30000)
    yield page
    page.close()


@pytest.fixture
def input_png(tmp_path) -> str:
    path = tmp_path / "input.png"
    path.write_bytes(png((96, 64), seed=5))
    return str(path)


def generate_and_wait(page, mode: str) -> Image.Image:
    page.locator(f"#{mode}-prompt textarea").fill("a red fox")
    page.locator(f"#{mode}-generate").click()
    page.wait_for_selector(f"#{mode}-gallery img", timeout=60000)
    page.wait_for_function(f"document.querySelector('#{mode}-seeds textarea').value.length > 0", timeout=30000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"browser-{mode}.png"), full_page=True)
    src = page.locator(f"#{mode}-gallery img").first.get_attribute("src")
    body = page.request.get(src).body()
    return Image.open(io.BytesIO(body))


def upload_to_editor(page, path: str) -> None:
    """Upload into the Inpainting editor, and wait until the image is its background.

    The editor's file input is there as soon as the tab opens, but its canvas starts a moment later
    (seconds on a busy machine) and an upload before that is dropped: a brush stroke then paints a blank
    canvas of the editor's own size. So: wait for the canvas, and upload again if the editor's "Upload
    an image" hint is still there."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.wait_for_selector("#inpaint-editor canvas", timeout=20000)
    for _attempt in range(3):
        page.locator("#inpaint-editor input[type=file]").set_input_files(path)
        try:
            page.wait_for_selector("#inpaint-editor .empty", state="detached", timeout=10000)
            return
        except PlaywrightTimeout:
            continue
    raise AssertionError("the Inpainting editor did not take the uploaded image")


def test_txt2img_tab(page):
    page.get_by_role("tab", name="Txt2Img").click()
    image = generate_and_wait(page, "txt2img")
    assert image.size == (64, 64)  # the services' default size in the tests, from GetInfo
    assert "Steps:" in page.locator("#txt2img-infotext textarea").input_value()
    assert "serving" in page.locator("#txt2img-status").inner_text()


def test_img2img_tab(page, input_png):
    page.get_by_role("tab", name="Img2Img").click()
    page.locator("#img2img-input input[type=file]").set_input_files(input_png)
    page.wait_for_selector("#img2img-input img", timeout=20000)
    image = generate_and_wait(page, "img2img")
    assert image.size == (96, 64)  # the input's own size
    assert "Denoising strength" in page.locator("#img2img-infotext textarea").input_value()


def test_inpainting_tab_paints_a_mask_with_the_brush(page, input_png):
    page.get_by_role("tab", name="Inpainting").click()
    upload_to_editor(page, input_png)
    page.wait_for_timeout(1000)
    page.locator("#inpaint-editor button[aria-label=Brush]").click()
    box = page.locator("#inpaint-editor canvas").last.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx - 30, cy)
    page.mouse.down()
    for i in range(16):
        page.mouse.move(cx - 30 + 4 * i, cy + (i % 3))
    page.mouse.up()
    image = generate_and_wait(page, "inpaint")
    assert image.size == (96, 64)
    source = Image.open(input_png).convert("RGB")
    result = image.convert("RGB")
    # Corners were not painted: the input's pixels, exactly. The stroke's middle was repainted.
    assert result.getpixel((1, 1)) == source.getpixel((1, 1))
    assert result.getpixel((48, 32)) != source.getpixel((48, 32))


def test_send_to_img2img(page):
    page.get_by_role("tab", name="Txt2Img").click()
    generate_and_wait(page, "txt2img")
    page.locator("#txt2img-to-img2img").click()
    page.wait_for_selector("#img2img-input img", timeout=20000)
    assert page.get_by_role("tab", name="Img2Img").get_attribute("aria-selected") == "true"
    assert generate_and_wait(page, "img2img").size == (64, 64)  # the sent image is Img2Img's input
