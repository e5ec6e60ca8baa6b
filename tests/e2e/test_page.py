"""The page an A1111 user knows, driven in a real browser (headless Chromium): the everyday controls in view,
Ctrl+Enter, the seed buttons, a batch count with Skip, Interrupt as a normal outcome, the semi-transparent
inpainting brush and its Mask mode."""

from __future__ import annotations

import io
import re

from playwright.sync_api import expect
from PIL import Image

from tests.conftest import wait_for

from .test_browser import ARTIFACTS, browser, input_png, page, result_of, stroke, upload_to_editor  # noqa: F401

EVERYDAY = ("scheduler", "schedule-type", "steps", "width", "height", "batch-count", "num-images", "guidance",
            "seed", "random-seed", "reuse-seed")
TABS = {"txt2img": "Txt2Img", "img2img": "Img2Img", "inpaint": "Inpainting"}
# A busy machine (CI's 2 shared cores) fills the outcome line and the seed boxes seconds after the event:
# every waiting assertion here waits up to 30 s, not Playwright's 5.
expect.set_options(timeout=30_000)


def set_number(page, selector: str, value) -> None:
    box = page.locator(f"{selector} input[type=number]").first
    box.fill(str(value))
    box.press("Enter")


def test_the_everyday_controls_are_in_view_and_the_rest_under_advanced(page):
    for mode, label in TABS.items():
        page.get_by_role("tab", name=label).click()
        for name in EVERYDAY:
            expect(page.locator(f"#{mode}-{name}")).to_be_visible(timeout=20000)
        for name in ("generate", "skip", "interrupt"):
            expect(page.locator(f"#{mode}-{name}")).to_be_visible()
        expect(page.locator(f"#{mode}-clip-skip")).to_be_hidden()  # Advanced stays closed
    # A1111's schedule types, Automatic first.
    page.get_by_role("tab", name="Txt2Img").click()
    page.locator("#txt2img-schedule-type input").click()
    for name in ("Automatic", "Uniform", "Karras", "Exponential", "SGM Uniform", "Beta"):
        expect(page.get_by_role("option", name=name, exact=True)).to_be_visible()
    page.get_by_role("option", name="Karras", exact=True).click()
    expect(page.locator("#txt2img-schedule-type input")).to_have_value("Karras")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-page.png"), full_page=True)


def test_ctrl_enter_in_the_prompt_generates_and_the_seed_buttons_reuse_and_clear_it(page):
    page.get_by_role("tab", name="Txt2Img").click()
    page.locator("#txt2img-prompt textarea").fill("a red fox")
    page.locator("#txt2img-prompt textarea").press("Control+Enter")
    result_of(page, "txt2img")
    seed = page.locator("#txt2img-seeds textarea").input_value()
    assert seed.isdigit()
    expect(page.locator("#txt2img-outcome")).to_contain_text("Done: 1 image.")
    page.locator("#txt2img-reuse-seed").click()
    expect(page.locator("#txt2img-seed input")).to_have_value(seed)
    page.locator("#txt2img-random-seed").click()
    expect(page.locator("#txt2img-seed input")).to_have_value("-1")
    # From the negative prompt too: a second generation, a new random seed.
    page.locator("#txt2img-negative textarea").fill("blurry")
    page.locator("#txt2img-negative textarea").press("Control+Enter")
    # The run clears the outputs when it starts, so wait for what only its end writes.
    expect(page.locator("#txt2img-infotext textarea")).to_have_value(re.compile("Negative prompt: blurry"),
                                                                     timeout=60000)
    expect(page.locator("#txt2img-seeds textarea")).to_have_value(re.compile(r"^\d+$"))
    expect(page.locator("#txt2img-seeds textarea")).not_to_have_value(seed)


def start_slow_batch(page, count: int) -> None:
    """A Txt2Img batch count of `count` at seed 100, each image slow enough to press a button during it."""
    page.get_by_role("tab", name="Txt2Img").click()
    for name, value in (("steps", 60), ("width", 512), ("height", 512), ("batch-count", count)):
        set_number(page, f"#txt2img-{name}", value)
    page.locator("#txt2img-seed input").fill("100")
    page.locator("#txt2img-prompt textarea").fill("a slow red fox")
    page.locator("#txt2img-generate").click()
    page.wait_for_selector("#txt2img-gallery img", timeout=60000)  # the first image's live preview


def test_skip_ends_the_current_image_and_the_batch_count_goes_on(page):
    start_slow_batch(page, 3)
    page.locator("#txt2img-skip").click()
    expect(page.locator("#txt2img-outcome")).to_contain_text("Done: 2 of 3 batches done (2 images), 1 skipped.",
                                                             timeout=240000)
    seeds = page.locator("#txt2img-seeds textarea").input_value().split(", ")
    assert len(seeds) == 2 and set(seeds) < {"100", "101", "102"}  # the skipped one's seed is not among them
    expect(page.locator("#txt2img-gallery img")).to_have_count(2)
    expect(page.locator(".toast-body.error")).to_have_count(0)


def test_interrupt_stops_the_batch_count_as_a_normal_outcome(page, services):
    service = services["txt2img"]
    steps_before = service.steps_run
    start_slow_batch(page, 3)
    page.locator("#txt2img-interrupt").click()
    expect(page.locator("#txt2img-outcome")).to_contain_text("Interrupted: ", timeout=60000)
    assert "of 3 batches done" in page.locator("#txt2img-outcome").inner_text()
    expect(page.locator(".toast-body").filter(has_text="interrupted")).to_have_count(1)  # a note
    expect(page.locator(".toast-body.error")).to_have_count(0)  # never an error
    assert service.steps_run - steps_before < 3 * 60  # the rest of the batch count never ran
    assert page.locator("#txt2img-gallery img").count() >= 1  # what was made (or its preview) stays
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-interrupted.png"), full_page=True)


def middle_brightness(page) -> int:
    """The brightest grey level of a 20x6 px patch at the middle of the Inpainting editor's canvas
    (where `stroke` paints)."""
    box = page.locator("#inpaint-editor canvas").last.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    shot = Image.open(io.BytesIO(page.screenshot(clip={"x": cx - 10, "y": cy - 3, "width": 20, "height": 6})))
    return max(shot.convert("L").getdata())


def test_the_inpainting_brush_is_semi_transparent_and_mask_mode_inverts(page, tmp_path):
    black = tmp_path / "black.png"
    Image.new("RGB", (96, 64), (0, 0, 0)).save(black)
    page.get_by_role("tab", name="Inpainting").click()
    # The editor's "empty" hint can leave before the image is drawn (a CI run stroked a blank canvas): the
    # stroke waits until the canvas' middle shows the black image, uploaded again if it never does.
    for _upload in range(3):
        upload_to_editor(page, str(black))
        if wait_for(lambda: middle_brightness(page) < 40, timeout=10):
            break
    else:
        raise AssertionError(f"the editor never showed the black image: {middle_brightness(page)}")
    page.wait_for_timeout(1000)
    page.locator("#inpaint-editor button[aria-label=Brush]").click()
    # As in test_browser.py: a busy machine's editor may drop a stroke drawn the moment the brush is picked;
    # it is drawn again (slower), never more than three times.
    for attempt in range(3):
        box, _cx, _cy = stroke(page, attempt + 1, 21)
        page.mouse.move(box["x"] + 2, box["y"] + 2)  # the brush's cursor away from the stroke
        page.wait_for_timeout(500)
        painted = middle_brightness(page)
        if painted >= 40:
            break
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-brush.png"), full_page=True)
    # White at half opacity over black: grey, the image shows through (an opaque brush paints 255).
    assert 60 < painted < 200, painted
    # Mask mode "Inpaint not masked": what was painted stays, the rest is repainted.
    page.locator("#tab-inpaint").get_by_text("Advanced").first.click()
    page.locator("#inpaint-mask-mode").get_by_text("Inpaint not masked").click()
    page.locator("#inpaint-prompt textarea").fill("a red fox")
    page.locator("#inpaint-generate").click()
    result = result_of(page, "inpaint").convert("RGB")
    assert "Mask mode: Inpaint not masked" in page.locator("#inpaint-infotext textarea").input_value()
    assert result.size == (96, 64) and result.getpixel((1, 1)) != (0, 0, 0)  # not painted: repainted
