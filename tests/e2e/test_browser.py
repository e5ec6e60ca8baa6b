"""A real browser (Debian's headless Chromium, driven by Playwright) uses each tab of the gateway.

Screenshots land in test-artifacts/ (one per tab), for people to look at.
"""

from __future__ import annotations

import io
import re
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
    page.wait_for_selector("button[role=tab]", timeout=90000)  # a busy machine starts Gradio slowly
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
    return result_of(page, mode)


def stroke(page, attempt: int, points: int, wobble: int = 1) -> tuple[dict, float, float]:
    """A horizontal brush stroke through the Inpainting editor's middle, 4 px a point (slower each
    attempt, as a busy machine's editor may drop a fast one); (the canvas' box, its middle x, y)."""
    page.wait_for_timeout(500 * (attempt + 1))
    box = page.locator("#inpaint-editor canvas").last.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    start = cx - 2 * (points - 1)
    page.mouse.move(start, cy)
    page.mouse.down()
    for i in range(points):
        page.mouse.move(start + 4 * i, cy + (i % wobble), steps=attempt + 1)
    page.mouse.up()
    return box, cx, cy


def result_of(page, mode: str) -> Image.Image:
    """The tab's result image, once its generation has ended."""
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
    # GetInfo's default model and its family.
    assert "serving · tiny (SD 1.x model)" in page.locator("#txt2img-status").inner_text()


def test_img2img_tab(page, input_png):
    page.get_by_role("tab", name="Img2Img").click()
    page.locator("#img2img-input input[type=file]").set_input_files(input_png)
    page.wait_for_selector("#img2img-input img", timeout=20000)
    image = generate_and_wait(page, "img2img")
    assert image.size == (96, 64)  # the input's own size
    assert "Denoising strength" in page.locator("#img2img-infotext textarea").input_value()


def test_extras_tab_upscales_the_image(page, input_png):
    page.get_by_role("tab", name="Extras").click()
    page.locator("#extras-image input[type=file]").set_input_files(input_png)
    page.wait_for_selector("#extras-image img", timeout=20000)
    page.locator("#extras-generate").click()
    page.wait_for_function("document.querySelector('#extras-info textarea').value.length > 0", timeout=60000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-extras.png"), full_page=True)
    src = page.locator("#extras-result img").first.get_attribute("src")
    assert Image.open(io.BytesIO(page.request.get(src).body())).size == (384, 256)  # "Resize" 4 by default
    assert page.locator("#extras-info textarea").input_value() == (
        "Postprocess upscale by: 4, Postprocess upscaler: Lanczos")  # no model here: Lanczos first


def test_inpainting_tab_paints_a_mask_with_the_brush(page, input_png):
    page.get_by_role("tab", name="Inpainting").click()
    upload_to_editor(page, input_png)
    page.wait_for_timeout(1000)
    page.locator("#inpaint-editor button[aria-label=Brush]").click()
    page.locator("#inpaint-prompt textarea").fill("a red fox")
    # On a busy machine the editor can drop a stroke drawn the moment the brush is picked; the tab then
    # says to paint first, and the stroke is drawn again (slower), never more than three times.
    for attempt in range(3):
        stroke(page, attempt, 16, wobble=3)
        page.locator("#inpaint-generate").click()
        page.wait_for_function("document.querySelector('#inpaint-gallery img') || "
                               "[...document.querySelectorAll('.toast-body')].some("
                               "t => t.innerText.includes('paint over'))", timeout=60000)
        if page.locator("#inpaint-gallery img").count():
            break
        page.locator(".toast-body").first.click()  # dismiss the note, draw again
    image = result_of(page, "inpaint")
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


def png_with_parameters(path: Path, text: str, size=(64, 64)) -> str:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    Image.new("RGB", size, (200, 100, 50)).save(path, pnginfo=info)
    return str(path)


def field(page, selector: str) -> str:
    return page.locator(selector).first.input_value()


def open_advanced(page, mode: str) -> None:
    """Open the tab's Advanced accordion (closed, its fields are not on the page)."""
    page.locator(f"#tab-{mode}").get_by_text("Advanced").first.click()
    page.wait_for_selector(f"#{mode}-seed input", timeout=10000)


def read_in_png_info(page, path, expected: str) -> None:
    """Drop a PNG on the PNG Info tab and wait until its parameters, with `expected` in them, show."""
    page.get_by_role("tab", name="PNG Info").click()
    page.locator("#png-info-image input[type=file]").set_input_files(path)
    page.wait_for_function(f"document.querySelector('#png-info-text textarea').value.includes('{expected}')",
                           timeout=30000)


def test_png_info_reads_automatic1111_parameters_and_sends_them_to_txt2img(page, tmp_path):
    text = ("a lighthouse at dusk\nNegative prompt: fog\n"
            "Steps: 7, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 4242, Size: 128x64, Model: v1-5")
    read_in_png_info(page, png_with_parameters(tmp_path / "a.png", text), "Seed: 4242")
    parsed = page.locator("#png-info-fields").inner_text()
    assert '"dpmpp_2m"' in parsed and '"karras"' in parsed  # A1111's old name: the sampler and its schedule
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-png-info.png"), full_page=True)
    page.locator("#png-info-to-txt2img").click()
    page.wait_for_function("document.querySelector('#txt2img-prompt textarea').value === 'a lighthouse at dusk'",
                           timeout=20000)
    assert page.get_by_role("tab", name="Txt2Img").get_attribute("aria-selected") == "true"
    assert field(page, "#txt2img-negative textarea") == "fog"
    open_advanced(page, "txt2img")
    assert field(page, "#txt2img-seed input") == "4242"
    assert field(page, "#txt2img-steps input[type=number]") == "7"
    assert field(page, "#txt2img-guidance input[type=number]") == "6.5"
    assert field(page, "#txt2img-width input[type=number]") == "128"
    assert field(page, "#txt2img-scheduler input") == "DPM++ 2M"  # A1111's name shown, ours sent


def test_png_info_sends_the_image_and_its_strength_to_img2img(page, tmp_path):
    text = ("a barn\nSteps: 5, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 77, Size: 64x64, "
            "Denoising strength: 0.35")
    read_in_png_info(page, png_with_parameters(tmp_path / "b.png", text), "Seed: 77")
    page.locator("#png-info-to-img2img").click()
    page.wait_for_selector("#img2img-input img", timeout=20000)
    assert field(page, "#img2img-prompt textarea") == "a barn"
    open_advanced(page, "img2img")
    assert field(page, "#img2img-strength input[type=number]") == "0.35"
    assert field(page, "#img2img-scheduler input") == "DPM++ 2M"


def test_history_lists_a_new_image_first_and_sends_its_parameters(page):
    page.get_by_role("tab", name="Txt2Img").click()
    generate_and_wait(page, "txt2img")
    seed = page.locator("#txt2img-seeds textarea").input_value()
    page.locator("#txt2img-prompt textarea").fill("something else")  # so the send visibly sets it back
    page.get_by_role("tab", name="History").click()
    page.wait_for_selector("#history-gallery img", timeout=30000)
    assert "newest first" in page.locator("#history-summary").inner_text()
    page.locator("#history-gallery img").first.click()
    page.wait_for_function(f"document.querySelector('#history-text textarea').value.includes('Seed: {seed}')",
                           timeout=20000)
    assert re.fullmatch(r"\d{5}-\d+\.png", page.locator("#history-picked textarea").input_value())  # no folders
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-history.png"), full_page=True)
    page.locator("#history-to-txt2img").click()
    page.wait_for_function("document.querySelector('#txt2img-prompt textarea').value === 'a red fox'",
                           timeout=20000)
    assert page.get_by_role("tab", name="Txt2Img").get_attribute("aria-selected") == "true"
    open_advanced(page, "txt2img")
    assert field(page, "#txt2img-seed input") == seed


LONG_STEPS = 60


def start_long_txt2img(page) -> None:
    """A Txt2Img generation long enough to watch (LONG_STEPS at 512x512; well within the gateway's deadline)."""
    page.get_by_role("tab", name="Txt2Img").click()
    page.locator("#tab-txt2img").get_by_text("Advanced").click()
    for field, value in (("steps", LONG_STEPS), ("width", 512), ("height", 512)):
        box = page.locator(f"#txt2img-{field} input[type=number]")
        box.fill(str(value))
        box.press("Enter")
    page.locator("#txt2img-prompt textarea").fill("a slow red fox")
    page.locator("#txt2img-generate").click()


def test_a_preview_shows_while_it_runs_and_interrupt_stops_it_keeping_the_preview(page, services):
    service = services["txt2img"]
    steps_before = service.steps_run
    start_long_txt2img(page)
    # A live preview (a JPEG) is in the result area while the seeds, which come with the result, are not.
    page.wait_for_selector("#txt2img-gallery img", timeout=60000)
    src = page.locator("#txt2img-gallery img").first.get_attribute("src")
    assert Image.open(io.BytesIO(page.request.get(src).body())).format == "JPEG"
    assert page.locator("#txt2img-seeds textarea").input_value() == ""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-preview.png"), full_page=True)
    page.locator("#txt2img-interrupt").click()
    # The service stops the request at its next step: nothing is left running, short of all its steps.
    wait = 0
    while service.engine.current and wait < 100:
        page.wait_for_timeout(100)
        wait += 1
    assert not service.engine.current
    assert service.steps_run - steps_before < LONG_STEPS
    page.wait_for_timeout(500)
    assert page.locator("#txt2img-gallery img").count() >= 1  # what was made so far stays
    assert page.locator("#txt2img-seeds textarea").input_value() == ""


def test_closing_the_page_cancels_its_generation(browser, gateway, services):
    service = services["txt2img"]
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    page.goto(gateway.url, wait_until="load")
    page.wait_for_selector("button[role=tab]", timeout=90000)  # a busy machine starts Gradio slowly
    steps_before = service.steps_run
    start_long_txt2img(page)
    page.wait_for_selector("#txt2img-gallery img", timeout=60000)  # it runs
    page.close()
    deadline = 0
    while service.engine.current and deadline < 100:
        import time

        time.sleep(0.1)
        deadline += 1
    assert not service.engine.current
    assert service.steps_run - steps_before < LONG_STEPS
