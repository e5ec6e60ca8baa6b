"""The gateway keeps every final image on disk, lists them (/history) and reads parameters (/png_info)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from gradio_client import handle_file
from PIL import Image, PngImagePlugin

from tests.conftest import RunningGateway, png, request_for

A1111 = ("a castle, <lora:add_detail:0.8>\nNegative prompt: lowres\n"
         "Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234, Size: 512x768, "
         'Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.75, Mask blur: 4, '
         'Lora hashes: "add_detail: 7c6bad76eb54", Version: v1.10.1')


def saved(root: Path, mode: str) -> list[Path]:
    return sorted(root.glob(f"{mode}/*/*"))


@pytest.fixture
def addresses(services):
    return {mode: service.address for mode, service in services.items()}


def test_final_images_are_saved_as_sent_numbered_on_across_a_restart(addresses, tmp_path):
    root = tmp_path / "outputs"
    gw = RunningGateway(addresses, outputs_dir=str(root))
    try:
        gallery, seeds, _info = gw.client().predict("a red fox", "", 2, 7.5, 64, 64, 7, 2, "euler_a",
                                                    api_name="/txt2img")
    finally:
        gw.close()
    files = saved(root, "txt2img")
    assert [f.name for f in files] == ["00001-7.png", "00002-8.png"] and seeds == "7, 8"
    # The service's bytes, infotext included: what the browser got.
    assert files[0].read_bytes() == Path(gallery[0]["image"]).read_bytes()
    assert not [n for f in root.rglob("*") for n in [f.name] if n.endswith(".tmp")]

    again = RunningGateway(addresses, outputs_dir=str(root))
    try:
        again.client().predict("a red fox", "", 2, 7.5, 64, 64, 9, 1, "euler_a", api_name="/txt2img")
        assert [f.name for f in saved(root, "txt2img")][-1] == "00003-9.png"
        # History: newest first, from the same folder.
        items, page, summary, *_ = again.client().predict("all", 1, api_name="/history")
        assert page == 1 and "3 images" in summary
        assert [item["caption"] for item in items] == ["txt2img #3 seed 9", "txt2img #2 seed 8", "txt2img #1 seed 7"]
        items, *_ = again.client().predict("img2img", 1, api_name="/history")
        assert items == []
    finally:
        again.close()


def test_an_unwritable_outputs_folder_loses_no_result(addresses, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):  # root ignores permissions: a kernel file system refuses instead
        folder = Path("/sys/imagegen-outputs")
    gw = RunningGateway(addresses, outputs_dir=str(folder))
    try:
        gallery, seeds, _info = gw.client().predict("a red fox", "", 2, 7.5, 64, 64, 5, 1, "euler_a",
                                                    api_name="/txt2img")
        assert seeds == "5" and Image.open(gallery[0]["image"]).size == (64, 64)
    finally:
        gw.close()
        (tmp_path / "ro").chmod(0o755)


def test_no_save_keeps_nothing(addresses, tmp_path):
    gw = RunningGateway(addresses, outputs_dir=str(tmp_path / "never"), save=False)
    try:
        gw.client().predict("a red fox", "", 2, 7.5, 64, 64, 5, 1, "euler_a", api_name="/txt2img")
    finally:
        gw.close()
    assert not (tmp_path / "never").exists()


def write_png(path: Path, text: str | None) -> str:
    info = PngImagePlugin.PngInfo()
    if text is not None:
        info.add_text("parameters", text)
    Image.new("RGB", (64, 64), (1, 2, 3)).save(path, pnginfo=info)
    return str(path)


def test_png_info_reads_automatic1111_parameters(gateway, tmp_path):
    text, fields = gateway.client().predict(handle_file(write_png(tmp_path / "a.png", A1111)), api_name="/png_info")
    assert text == A1111
    assert fields["mode"] == "inpaint" and fields["scheduler"] == "dpmpp_2m"
    assert fields["schedule_type"] == "karras"
    assert (fields["steps"], fields["guidance_scale"], fields["seed"]) == (30, 7.0, "1234")
    assert (fields["width"], fields["height"], fields["strength"], fields["mask_blur"]) == (512, 768, 0.75, 4)
    assert fields["loras"] == {"add_detail": "7c6bad76eb54"}


@pytest.mark.parametrize("fmt,suffix", [("png", "png"), ("jpeg", "jpg"), ("webp", "webp")])
def test_png_info_reads_what_the_services_make(gateway, services, tmp_path, fmt, suffix):
    image = services["img2img"].client.generate(request_for("img2img", output_format=fmt, seed=11,
                                                            scheduler="unipc")).images[0]
    path = tmp_path / f"made.{suffix}"
    path.write_bytes(image.data)
    text, fields = gateway.client().predict(handle_file(str(path)), api_name="/png_info")
    assert text == image.infotext
    assert fields["mode"] == "img2img" and fields["seed"] == "11" and fields["scheduler"] == "unipc"


def test_png_info_says_when_there_are_no_parameters(gateway, tmp_path):
    path = tmp_path / "plain.png"
    path.write_bytes(png())
    text, fields = gateway.client().predict(handle_file(str(path)), api_name="/png_info")
    assert text == "" and "no generation parameters" in fields["error"]
