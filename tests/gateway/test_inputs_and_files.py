"""What the gateway takes in and hands out as files: images sent between tabs go as their own bytes and
are checked from their header (never decoded here); uploads that are not images are refused at once;
only the images it saved are served, and odd entries in the outputs folder never break History."""

from __future__ import annotations

import os
import struct
import threading
import time
import zlib
from pathlib import Path

import httpx
import pytest
from PIL import Image, PngImagePlugin

from tests.conftest import RunningGateway, png
from tests.gateway.page_events import trigger, upload

MiB = 1024 * 1024


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_png(path: Path, side: int = 13000) -> Path:
    """A valid 1-bit PNG of side x side pixels in a few tens of KB: written row by row here (PIL would
    hold every pixel), it decodes to side^2 x 3 bytes in RGB (500 MB at 13000)."""
    row = b"\0" * (1 + (side + 7) // 8)  # filter byte + packed bits
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(row * side, 9))
                     + _chunk(b"IEND", b""))
    return path


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class PeakMemory:
    """This process's resident memory, sampled every 5 ms while the block runs: its peak over the start."""

    def __enter__(self):
        self.start, self.peak, self._done = rss(), 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._done.is_set():
            self.peak = max(self.peak, rss())
            time.sleep(0.005)

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()

    @property
    def rise(self) -> int:
        return max(0, self.peak - self.start)


def with_parameters(path: Path, text: str, size=(64, 64)) -> Path:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    Image.new("RGB", size, (9, 8, 7)).save(path, pnginfo=info)
    return path


def test_a_huge_image_sent_to_img2img_is_refused_from_its_header_without_decoding(gateway, tmp_path):
    bomb = huge_png(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 200_000
    value = upload(gateway.url, bomb)
    with PeakMemory() as memory:
        started = time.monotonic()
        outcome = trigger(gateway.url, gateway.demo, "png-info-to-img2img", "click", [value])
        took = time.monotonic() - started
    assert not outcome.success
    assert outcome.error == ("Img2Img: the input image sent is 13000x13000 (169,000,000 pixels), over the "
                             "service's limit of 16,777,216 pixels (max_input_pixels); use a smaller image.")
    # Decoding it would take 500 MB (RGB) and seconds; its header alone, neither.
    assert memory.rise < 100 * MiB, memory.rise
    assert took < 10, took
    # Inpainting's editor refuses it the same way, naming its own tab.
    outcome = trigger(gateway.url, gateway.demo, "png-info-to-inpaint", "click", [value])
    assert not outcome.success and outcome.error.startswith("Inpainting: the input image sent is 13000x13000")


def test_an_image_sent_goes_as_the_file_s_own_bytes(gateway, tmp_path):
    source = with_parameters(tmp_path / "made.png", "a barn\nSteps: 5, Sampler: Euler a, CFG scale: 7, Seed: 77, "
                             "Size: 64x64, Denoising strength: 0.35")
    outcome = trigger(gateway.url, gateway.demo, "png-info-to-img2img", "click", [upload(gateway.url, source)])
    assert outcome.success, outcome.error
    # The image input, then the tab's ControlNet units (recalled as settings), then the tab row.
    image = next(d["value"] for d in outcome.data if isinstance(d, dict) and isinstance(d.get("value"), dict)
                 and "path" in d["value"])
    tab = outcome.data[-1]
    assert tab["selected"] == "img2img"
    # Not decoded and re-encoded: the same bytes, the infotext chunk included.
    assert Path(image["path"]).read_bytes() == source.read_bytes()

    outcome = trigger(gateway.url, gateway.demo, "png-info-to-inpaint", "click", [upload(gateway.url, source)])
    assert outcome.success, outcome.error
    editor = next(d["value"] for d in outcome.data if isinstance(d, dict) and isinstance(d.get("value"), dict)
                  and "background" in d["value"])
    assert Path(editor["background"]["path"]).read_bytes() == source.read_bytes()


@pytest.mark.parametrize("elem_id, what", [("img2img-input", "Img2Img: the input image"),
                                           ("inpaint-mask", "Inpainting: the uploaded mask")])
def test_an_upload_that_is_not_an_image_is_refused_at_once(gateway, tmp_path, elem_id, what):
    fake = tmp_path / "holiday.png"
    fake.write_bytes(b"just some text, named like an image")
    outcome = trigger(gateway.url, gateway.demo, elem_id, "upload", [upload(gateway.url, fake)])
    assert outcome.success and outcome.data == [None]  # the input is cleared
    assert outcome.logs == [("warning", f"{what} is not a readable image (PNG, JPEG, WEBP, BMP or GIF).")]

    real = tmp_path / "real.png"
    real.write_bytes(png())
    outcome = trigger(gateway.url, gateway.demo, elem_id, "upload", [upload(gateway.url, real)])
    assert outcome.success and outcome.logs == [] and outcome.data[0].get("__type__") == "update"  # kept


def test_the_editor_refuses_a_non_image_background_at_upload(gateway, tmp_path):
    fake = tmp_path / "holiday.webp"
    fake.write_bytes(b"RIFF....WEBPnot really")
    editor = {"background": upload(gateway.url, fake), "layers": [], "composite": None}
    outcome = trigger(gateway.url, gateway.demo, "inpaint-editor", "upload", [editor])
    assert outcome.success and outcome.data == [None]
    assert outcome.logs[0][1].startswith("Inpainting: the editor's image or a brush layer is not a readable image")


@pytest.fixture
def saved_gateway(services, tmp_path):
    """A gateway with its own outputs folder, and one txt2img image saved there."""
    root = tmp_path / "outputs"
    gw = RunningGateway({mode: s.address for mode, s in services.items()}, outputs_dir=str(root))
    try:
        gw.client().predict("a red fox", "", 2, 7.5, 64, 64, 7, 1, "model default", api_name="/txt2img")
        (saved,) = root.glob("txt2img/*/*.png")
        yield gw, saved
    finally:
        gw.close()


def fetch(gw: RunningGateway, path: str | Path) -> httpx.Response:
    return httpx.get(f"{gw.url}gradio_api/file={path}", timeout=30)


def test_only_the_saved_images_are_served_never_the_outputs_folder(saved_gateway):
    gw, saved = saved_gateway
    notes, partial = saved.parent / "notes.txt", saved.parent / ".00002-8.png.tmp"
    notes.write_text("the operator's notes")
    partial.write_bytes(b"half an image")
    for path in (notes, partial, saved):  # the folder is not served, not even the image itself
        assert fetch(gw, path.resolve()).status_code in (403, 404), path
    # History shows the saved image: its copy, which the browser can fetch.
    items, _page, summary, *_ = gw.client().predict("all", 1, api_name="/history")
    assert "1 image" in summary and len(items) == 1
    shown = items[0]["image"]
    assert Path(shown).read_bytes() == saved.read_bytes()
    reply = fetch(gw, shown)
    assert reply.status_code == 200 and reply.content == saved.read_bytes()


def test_odd_entries_named_like_images_never_break_history(saved_gateway, tmp_path):
    gw, saved = saved_gateway
    day = saved.parent
    (day / "00002-5.png").mkdir()  # a folder
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the browser")
    (day / "00003-6.png").symlink_to(secret)  # a link out of the folder
    (day / "00004-7.png").symlink_to(tmp_path / "gone")  # a broken link
    os.mkfifo(day / "00005-8.png")  # a pipe: opening it would block a worker forever
    items, page, summary, *_ = gw.client().predict("all", 1, api_name="/history")
    assert page == 1 and "1 image" in summary
    assert [item["caption"] for item in items] == ["txt2img #1 seed 7"]
    assert Path(items[0]["image"]).read_bytes() == saved.read_bytes()


def test_a_result_sent_from_a_tab_s_gallery_goes_as_its_file_and_is_checked(gateway, tmp_path):
    gallery, _seeds, _info = gateway.client().predict("a red fox", "", 2, 7.5, 64, 64, 7, 1, "model default",
                                                      api_name="/txt2img")
    made = Path(gallery[0]["image"])
    # The page sends the gallery's value back (files the browser holds): here, the result uploaded again.
    outcome = trigger(gateway.url, gateway.demo, "txt2img-to-img2img", "click",
                      [[{"image": upload(gateway.url, made), "caption": None}], 0])
    assert outcome.success, outcome.error
    assert Path(outcome.data[0]["path"]).read_bytes() == made.read_bytes()
    assert outcome.data[1]["selected"] == "img2img"
    bomb = upload(gateway.url, huge_png(tmp_path / "bomb.png"))
    outcome = trigger(gateway.url, gateway.demo, "txt2img-to-inpaint", "click",
                      [[{"image": bomb, "caption": None}], 0])
    assert not outcome.success and outcome.error.startswith("Inpainting: the input image sent is 13000x13000")
