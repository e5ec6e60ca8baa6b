"""PNG Info on hostile or odd files: it answers at once, keeps other pages answering, reads past big
unrelated text chunks, and what it cannot use it says once."""

from __future__ import annotations

import threading
import time
import zlib

import pytest
from gradio_client import handle_file
from PIL import Image, PngImagePlugin

from tests.conftest import RunningGateway, free_port

PARAMETERS = "a fox\nSteps: 4, Sampler: Euler a, CFG scale: 7, Seed: 3, Size: 64x64"


@pytest.fixture(scope="module")
def gateway():
    # No service is needed to read files: every mode's address is a closed port.
    running = RunningGateway({mode: f"127.0.0.1:{free_port()}" for mode in ("txt2img", "img2img", "inpaint")},
                             timeout_s=2, retries=0)
    yield running
    running.close()


def png_with(path, *chunks: tuple[str, str]) -> str:
    """A small PNG with compressed text chunks (keyword, text)."""
    info = PngImagePlugin.PngInfo()
    for keyword, text in chunks:
        info.add_text(keyword, text, zip=True)
    Image.new("RGB", (16, 16)).save(path, pnginfo=info)
    return str(path)


@pytest.mark.parametrize("letters", [60_000, 2**20])
def test_a_long_line_without_a_colon_answers_at_once_and_others_are_served(gateway, tmp_path, letters):
    path = png_with(tmp_path / "bomb.png", ("parameters", "a" * letters))
    assert (tmp_path / "bomb.png").stat().st_size < 2000  # a few hundred bytes: letters compress to nothing
    times = {}

    def timed(name: str, call):
        start = time.perf_counter()
        times[name] = (call(), time.perf_counter() - start)

    reader = threading.Thread(target=timed, args=("png_info", lambda: gateway.client().predict(
        handle_file(path), api_name="/png_info")))
    other = gateway.client()  # another browser's page: the History tab
    reader.start()
    timed("history", lambda: other.predict("all", 1, api_name="/history"))
    reader.join(60)
    (text, fields), png_info_s = times["png_info"]
    assert "error" in fields and png_info_s < 10, (fields, png_info_s)  # the old reader: 31 s for 60,000
    assert times["history"][1] < 10  # it waited 28 s behind the old reader
    assert len(text) <= 64 * 1024  # what is shown of the text is bounded too


def test_a_big_unrelated_text_chunk_does_not_make_the_image_unreadable(gateway, tmp_path):
    workflow = '{"nodes": [' + ", ".join(f'{{"id": {i}, "type": "KSampler"}}' for i in range(100_000)) + "]}"
    assert len(workflow) > PngImagePlugin.MAX_TEXT_CHUNK and len(zlib.compress(workflow.encode())) < 2**20
    path = png_with(tmp_path / "comfy.png", ("workflow", workflow), ("parameters", PARAMETERS))
    text, fields = gateway.client().predict(handle_file(path), api_name="/png_info")
    assert text == PARAMETERS and fields["seed"] == "3" and fields["steps"] == 4


def test_absurd_values_are_shown_as_problems(gateway, tmp_path):
    text = ("a fox\nSteps: 1000000000, Sampler: Euler a, CFG scale: 1e400, Seed: 18446744073709551616, "
            "Size: 8x8")
    path = png_with(tmp_path / "odd.png", ("parameters", text))
    _text, fields = gateway.client().predict(handle_file(path), api_name="/png_info")
    assert "seed" not in fields and "steps" not in fields and "guidance_scale" not in fields
    assert [p.split(" '")[0] for p in fields["problems"]] == ["Steps", "CFG scale", "Seed", "Size"]


def test_an_image_is_read_once_per_upload(gateway):
    """Gradio fires an image's change event twice when one image replaces another (each warning showed
    twice, seen in Chromium): PNG Info reads on upload (a paste is one too) and empties on clear."""
    config = gateway.demo.config
    image = next(c["id"] for c in config["components"]
                 if c.get("props", {}).get("elem_id") == "png-info-image")
    events = sorted(event for dependency in config["dependencies"] for target, event in dependency["targets"]
                    if target == image)
    assert events == ["clear", "upload"]
