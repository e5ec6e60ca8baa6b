"""A real browser uses a tab's Networks panel: a LoRA card writes `<lora:name:weight>` at the slider's weight,
takes it out on a second click and re-weights it after the slider moves; an embedding card writes into the
negative prompt; 🔄 shows a LoRA added since; a tab whose service lists none says how to add some."""

from __future__ import annotations

import shutil

import pytest

from services.core.models.presets import ensure_sample_embeddings, ensure_sample_loras
from tests.conftest import CACHE_DIR, RunningGateway, RunningService
from tests.e2e.test_browser import ARTIFACTS, browser  # noqa: F401 - the shared headless Chromium


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("loras")
    shutil.copy(ensure_sample_loras(CACHE_DIR) / "tiny-lora.safetensors", folder)
    return folder


@pytest.fixture(scope="module")
def gateway(lora_dir):
    """Txt2Img's service with a LoRA and the sample embeddings; the other modes' are not there."""
    service = RunningService("txt2img", "--warmup", "false", "--lora-dir", str(lora_dir),
                             "--embeddings-dir", str(ensure_sample_embeddings(CACHE_DIR)))
    running = RunningGateway({"txt2img": service.address, "img2img": "127.0.0.1:1", "inpaint": "127.0.0.1:1"})
    yield running
    running.close()
    service.stop()


@pytest.fixture
def page(browser, gateway):  # noqa: F811 - the shared browser fixture
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    page.goto(gateway.url, wait_until="load")
    page.wait_for_selector("button[role=tab]", timeout=90000)  # a busy machine starts Gradio slowly
    yield page
    page.close()


def open_networks(page, mode: str) -> None:
    page.get_by_role("tab", name={"txt2img": "Txt2Img", "img2img": "Img2Img"}[mode]).click()
    page.locator(f"#{mode}-networks").get_by_text("Networks: LoRA, Textual Inversion").click()
    page.wait_for_selector(f"#{mode}-lora-weight input[type=number]", timeout=20000)


def set_weight(page, selector: str, value: float) -> None:
    box = page.locator(f"{selector} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def wait_value(page, selector: str, expected: str) -> None:
    page.wait_for_function("([selector, expected]) => document.querySelector(selector).value === expected",
                           arg=[selector, expected], timeout=20000)


def click_card(page, cards: str, name: str) -> None:
    page.locator(cards).get_by_text(name, exact=True).click()


def test_a_lora_card_writes_its_tag_at_the_slider_s_weight_and_toggles_it(page):
    prompt = "#txt2img-prompt textarea"
    open_networks(page, "txt2img")
    page.locator(prompt).fill("a red fox")
    set_weight(page, "#txt2img-lora-weight", 0.6)
    click_card(page, "#txt2img-lora-cards", "tiny-lora")
    wait_value(page, prompt, "a red fox <lora:tiny-lora:0.6>")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-networks.png"), full_page=True)
    click_card(page, "#txt2img-lora-cards", "tiny-lora")  # again, at the same weight: taken out
    wait_value(page, prompt, "a red fox")
    click_card(page, "#txt2img-lora-cards", "tiny-lora")
    wait_value(page, prompt, "a red fox <lora:tiny-lora:0.6>")
    set_weight(page, "#txt2img-lora-weight", -1.5)
    click_card(page, "#txt2img-lora-cards", "tiny-lora")  # the slider moved: the tag's weight follows
    wait_value(page, prompt, "a red fox <lora:tiny-lora:-1.5>")


def test_an_embedding_card_writes_into_the_negative_prompt(page):
    open_networks(page, "txt2img")
    page.locator("#txt2img-networks").get_by_role("tab", name="Textual Inversion").click()
    page.locator("#txt2img-embedding-target").get_by_text("Negative prompt").click()
    page.locator("#txt2img-negative textarea").fill("blurry")
    click_card(page, "#txt2img-embedding-cards", "tiny-embedding")
    wait_value(page, "#txt2img-negative textarea", "blurry tiny-embedding")
    assert page.locator("#txt2img-prompt textarea").input_value() == ""


def test_the_refresh_shows_a_lora_added_since_and_an_empty_list_says_how_to_add_some(page, lora_dir):
    open_networks(page, "txt2img")
    assert page.locator("#txt2img-lora-cards").get_by_text("film", exact=True).count() == 0
    shutil.copy(lora_dir / "tiny-lora.safetensors", lora_dir / "film.safetensors")
    page.locator("#txt2img-model-refresh").click()
    page.locator("#txt2img-lora-cards").get_by_text("film", exact=True).wait_for(timeout=20000)
    click_card(page, "#txt2img-lora-cards", "film")
    wait_value(page, "#txt2img-prompt textarea", "<lora:film:1>")
    open_networks(page, "img2img")  # its service is not there: no LoRAs
    assert "start the service with --lora-dir DIR" in page.locator("#img2img-lora-note").inner_text()
