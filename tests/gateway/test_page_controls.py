"""The page's A1111 controls over the gateway's API (/txt2img, /inpaint) on real services: the batch count
runs consecutive requests with A1111's seeds, the Inpainting tab's Mask mode inverts the mask."""

from __future__ import annotations

import io
from pathlib import Path

from gradio_client import handle_file
from PIL import Image, ImageOps

from tests.conftest import box_mask, png

SMALL = {"steps": 2, "width": 64, "height": 64, "scheduler": "euler_a"}
# The page's inputs (#23) came after every earlier group, so they end each tab's API.
PAGE_INPUTS = {"txt2img": ["schedule_type", "batch_count"], "img2img": ["schedule_type", "batch_count"],
               "inpaint": ["schedule_type", "batch_count", "invert_mask"]}


def images(gallery) -> list[bytes]:
    return [Image.open(item["image"]).convert("RGB").tobytes() for item in gallery]


def test_the_pages_inputs_end_each_tabs_api_so_positional_callers_of_before_keep_working(gateway):
    api = gateway.client().view_api(print_info=False, return_format="dict")
    for mode, inputs in PAGE_INPUTS.items():
        names = [p["parameter_name"] for p in api["named_endpoints"][f"/{mode}"]["parameters"]]
        assert names[-len(inputs):] == inputs


def test_a_batch_count_runs_batches_whose_seeds_follow_a1111(gateway):
    client = gateway.client()
    gallery, seeds, infotext = client.predict(prompt="a fox", seed=100, num_images=2, batch_count=3, **SMALL,
                                              api_name="/txt2img")
    # A1111: iteration i takes seeds seed + i * batch_size, ...: every image's seed once, in order.
    assert seeds == "100, 101, 102, 103, 104, 105" and len(gallery) == 6
    assert [line.split("Seed: ")[1].split(",")[0] for line in infotext.split("\n\n")] == seeds.split(", ")
    # The second iteration is the very request a batch of two at seed 102 is.
    alone, alone_seeds, _i = client.predict(prompt="a fox", seed=102, num_images=2, **SMALL, api_name="/txt2img")
    assert alone_seeds == "102, 103" and images(alone) == images(gallery)[2:4]


def test_a_random_seed_is_picked_once_for_the_batch_count(gateway):
    _g, seeds, _i = gateway.client().predict(prompt="a fox", seed=-1, batch_count=2, **SMALL, api_name="/txt2img")
    first, second = map(int, seeds.split(", "))
    assert second == first + 1


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_mask_mode_inpaint_not_masked_repaints_all_but_the_mask(gateway, tmp_path):
    client = gateway.client()
    source = png((96, 64), seed=3)
    editor = {"background": handle_file(write(tmp_path, "in.png", source)), "layers": [], "composite": None}
    mask = box_mask((96, 64), (10, 10, 50, 50))
    inverted = io.BytesIO()
    ImageOps.invert(Image.open(io.BytesIO(mask))).save(inverted, format="PNG")
    settings = {"prompt": "a cat", "steps": 3, "seed": 5, "strength": 1.0, "mask_blur": 0}
    gallery, _s, infotext = client.predict(editor=editor, mask=handle_file(write(tmp_path, "m.png", mask)),
                                           invert_mask=True, **settings, api_name="/inpaint")
    assert "Mask mode: Inpaint not masked" in infotext
    result = Image.open(gallery[0]["image"]).convert("RGB")
    original = Image.open(io.BytesIO(source)).convert("RGB")
    assert result.getpixel((30, 30)) == original.getpixel((30, 30))  # masked: kept
    assert result.getpixel((90, 60)) != original.getpixel((90, 60))  # not masked: repainted
    # The same image as the inverted mask uploaded as it is.
    plain, _s, infotext = client.predict(editor=editor, mask=handle_file(write(tmp_path, "i.png", inverted.getvalue())),
                                         **settings, api_name="/inpaint")
    assert "Mask mode" not in infotext and images(plain) == images(gallery)
