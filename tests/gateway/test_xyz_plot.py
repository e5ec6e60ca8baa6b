"""The Txt2Img tab's X/Y/Z plot through gradio_client (its `/txt2img_xyz` endpoint): the grid first, its
cells the images made one by one, saved beside them; a bad or too-large plot names its axis."""

from __future__ import annotations

import io

import numpy as np
import pytest
from gradio_client.exceptions import AppError
from PIL import Image

from imagegen.v1.infotext import split_infotext
from services.client import make_request

MAX_BATCH_DIFF = 3  # a crowd's image against the same one alone, as tests/services/test_engine.py allows
TAB = {"prompt": "a red fox", "negative_prompt": "", "steps": 3, "guidance": 7.5, "width": 64, "height": 64,
       "seed": 5, "num_images": 1, "scheduler": "euler", "clip_skip": 1}


def rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def plot(gateway, **axes):
    return gateway.client().predict(**TAB, **axes, api_name="/txt2img_xyz")


def test_a_cfg_by_seed_plot_in_the_tab(gateway, services):
    outputs = gateway.gateway.hub.outputs
    before = {saved.path for saved in outputs.listing("txt2img")}
    gallery, seeds, infotext = plot(gateway, x_type="CFG Scale", x_values="3, 9", y_type="Seed",
                                    y_values="21-22", include_lone_images=True)
    files = [item["image"] for item in gallery]
    assert len(files) == 5 and seeds == "21, 21, 22, 22"
    with open(files[0], "rb") as f:
        grid = Image.open(io.BytesIO(f.read()))
        grid.load()
    pad_left, pad_top = 48, grid.height - 128  # A1111's margins for the row and column titles
    assert grid.width == pad_left + 128 and pad_top > 0
    pairs = split_infotext(grid.info["parameters"])[2]
    assert (pairs["X Type"], pairs["Y Type"], pairs["Fixed Y Values"]) == ("CFG Scale", "Seed", "21, 22")
    assert infotext.split("\n\n")[0] == grid.info["parameters"]
    array = np.asarray(grid.convert("RGB"), dtype=np.int16)
    for i, ((cfg, seed), path) in enumerate(zip([(3, 21), (9, 21), (3, 22), (9, 22)], files[1:])):
        with open(path, "rb") as f:
            cell = rgb(f.read())
        x, y = pad_left + (i % 2) * 64, pad_top + (i // 2) * 64
        assert np.array_equal(array[y:y + 64, x:x + 64], cell)  # the grid holds the cell's own pixels
        direct = services["txt2img"].client.generate(make_request(
            "txt2img", "a red fox", steps=3, guidance_scale=cfg, seed=seed, width=64, height=64, scheduler="euler",
            clip_skip=1))
        assert np.abs(cell - rgb(direct.images[0].data)).max() <= MAX_BATCH_DIFF
    new = [saved for saved in outputs.listing("txt2img") if saved.path not in before]
    assert len(new) == 5  # four cells and the grid, in the same folder
    assert len({saved.path.rsplit("/", 1)[0] for saved in new}) == 1


def test_a_bad_or_too_large_plot_names_its_axis_and_the_tab_keeps_working(gateway):
    with pytest.raises(AppError, match=r"Y values: 9 x 9 x 1 = 81 cells; a plot makes at most 64"):
        plot(gateway, x_type="Seed", x_values="1-9", y_type="Steps", y_values="1-9")
    with pytest.raises(AppError, match=r"X values: unknown sampler 'Nope'"):
        plot(gateway, x_type="Sampler", x_values="Euler a, Nope")
    with pytest.raises(AppError, match=r"X type: 'Eta' is not one of"):
        plot(gateway, x_type="Eta", x_values="1")
    gallery, seeds, _info = plot(gateway, x_type="Steps", x_values="2, 3")
    assert len(gallery) == 1 and seeds == "5, 5"  # the grid alone (no sub images): one seed for all cells
