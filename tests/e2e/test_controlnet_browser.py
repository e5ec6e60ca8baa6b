"""The ControlNet section in a real browser: its unit tabs, the no-models hint, and 💥 showing the map."""

from __future__ import annotations

from playwright.sync_api import expect

from .test_browser import ARTIFACTS, browser, input_png, page  # noqa: F401 - the fixtures


def test_a_units_preview_shows_the_detected_map(page, input_png):  # noqa: F811
    page.locator("#txt2img-controlnet").get_by_text("ControlNet", exact=True).first.click()
    for i in range(3):
        # the accordion renders its tabs after the click: wait for them rather than count at once
        expect(page.get_by_role("tab", name=f"ControlNet Unit {i}")).to_have_count(1, timeout=30000)
    assert page.locator("#txt2img-controlnet-hint").get_by_text("--controlnet-dir DIR").is_visible()
    page.locator("#txt2img-cn0-image input[type=file]").set_input_files(input_png)
    page.wait_for_selector("#txt2img-cn0-image img", timeout=30000)
    page.locator("#txt2img-cn0-preview").click()
    page.wait_for_selector("#txt2img-cn0-detected img", timeout=30000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-controlnet.png"), full_page=True)
    # "none" has no parameters: its sliders are hidden
    assert not page.locator("#txt2img-cn0-threshold_a").is_visible()
