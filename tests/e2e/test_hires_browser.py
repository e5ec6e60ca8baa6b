"""The Txt2Img tab's Hires. fix in a real browser: PNG Info sends A1111's hires parameters into its controls.

Needs no second pass from the service: only the page's controls are checked.
"""

from __future__ import annotations

from .test_browser import ARTIFACTS, browser, field, page, png_with_parameters, read_in_png_info  # noqa: F401

A1111_HIRES = (
    "a lighthouse at dusk\nNegative prompt: fog\n"
    "Steps: 7, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 4242, Size: 128x64, "
    "Denoising strength: 0.45, Hires upscale: 1.5, Hires steps: 4, Hires upscaler: Latent (nearest), "
    'Hires prompt: "a lighthouse at dusk, sharp", Version: v1.10.1'
)


def open_hires(page) -> None:
    page.locator("#txt2img-hires").get_by_text("Hires. fix (upscale").first.click()
    page.wait_for_selector("#txt2img-hires-steps input", timeout=10000)


def test_png_info_fills_the_hires_fix_controls_and_a_plain_image_unticks_them(page, tmp_path):
    read_in_png_info(page, png_with_parameters(tmp_path / "h.png", A1111_HIRES), "Hires upscale")
    assert '"hires"' in page.locator("#png-info-fields").inner_text()  # the parsed fields show the second pass
    page.locator("#png-info-to-txt2img").click()
    page.wait_for_function("document.querySelector('#txt2img-prompt textarea').value === 'a lighthouse at dusk'",
                           timeout=20000)
    open_hires(page)
    assert page.locator("#txt2img-hires-enable input").is_checked()
    assert field(page, "#txt2img-hires-steps input[type=number]") == "4"
    assert field(page, "#txt2img-hires-scale input[type=number]") == "1.5"
    assert field(page, "#txt2img-hires-strength input[type=number]") == "0.45"
    assert field(page, "#txt2img-hires-upscaler input") == "Latent (nearest)"
    assert field(page, "#txt2img-hires-prompt textarea") == "a lighthouse at dusk, sharp"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-hires-fix.png"), full_page=True)
    plain = "a barn\nSteps: 5, Sampler: Euler a, CFG scale: 7, Seed: 77, Size: 64x64"
    read_in_png_info(page, png_with_parameters(tmp_path / "p.png", plain), "Seed: 77")
    page.locator("#png-info-to-txt2img").click()
    page.wait_for_function("document.querySelector('#txt2img-prompt textarea').value === 'a barn'", timeout=20000)
    assert not page.locator("#txt2img-hires-enable input").is_checked()
