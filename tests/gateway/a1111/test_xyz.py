"""The `x/y/z plot` script through the A1111 API: the grid's cells are the images made one by one, the
grid is those cells with A1111's label margins, saved beside them; bad plots are 422s naming script_args."""

from __future__ import annotations

import base64
import io

import numpy as np
import requests
from PIL import Image

from imagegen.v1.infotext import split_infotext
from services.client import make_request

from .conftest import SMALL, decoded, info_of, pixels

# txt2img's axis list (A1111 1.10): 1 Seed, 4 Steps, 6 CFG Scale.
SEED, STEPS, CFG = 1, 4, 6
MAX_BATCH_DIFF = 3  # as tests/services/test_engine.py allows a crowd's images against each one alone


def script_args(x_type, x_values, y_type=0, y_values="", z_type=0, z_values="", lone=True, legend=True):
    return [x_type, x_values, [], y_type, y_values, [], z_type, z_values, [], legend, lone, False, False,
            False, False, False, 0, False]


def test_a_2x2_plot_is_its_cells_made_one_by_one_and_is_saved_beside_them(api, services, gateway):
    outputs = gateway.gateway.hub.outputs
    before = {saved.path for saved in outputs.listing("txt2img")}
    body = {"prompt": "a red fox", "seed": 3, **SMALL, "script_name": "x/y/z plot", "save_images": True,
            "script_args": script_args(STEPS, "2, 4", SEED, "11, 12")}
    service = services["txt2img"]
    calls = service.metric("imagegen_step_rows_count")
    answer = requests.post(f"{api}/txt2img", json=body, timeout=300)
    assert answer.status_code == 200, answer.text
    calls = service.metric("imagegen_step_rows_count") - calls
    if "step" in type(service.engine).__name__.lower():  # the services' default engine
        assert 0 < calls < 2 + 4 + 2 + 4  # the cells were served together, sharing UNet calls
    answer = answer.json()
    info = info_of(answer)
    assert len(answer["images"]) == 5 and info["index_of_first_image"] == 1  # the grid, then the cells
    cells = [(2, 11), (4, 11), (2, 12), (4, 12)]  # x fastest, as A1111 orders them
    assert info["all_seeds"] == [11, 11, 12, 12]
    for (steps, seed), text, infotext in zip(cells, answer["images"][1:], info["infotexts"][1:]):
        direct = service.client.generate(make_request("txt2img", "a red fox", steps=steps, seed=seed, width=64,
                                                      height=64, scheduler="euler", guidance_scale=7.0))
        assert infotext == direct.images[0].infotext
        # Batched with the other cells, a cell may round differently from one alone (the engine's own bound).
        assert np.abs(pixels(base64.b64decode(text)) - pixels(direct.images[0].data)).max() <= MAX_BATCH_DIFF

    grid = decoded(answer["images"][0])
    pad_left = 64 * 3 // 4  # the row titles' margin, as A1111's draw_grid_annotations
    pad_top = grid.height - 128
    assert grid.width == pad_left + 128 and pad_top > 0
    array = np.asarray(grid.convert("RGB"), dtype=np.int16)
    for i, text in enumerate(answer["images"][1:]):
        x, y = pad_left + (i % 2) * 64, pad_top + (i // 2) * 64
        assert np.array_equal(array[y:y + 64, x:x + 64], pixels(base64.b64decode(text)))
    _prompt, _negative, pairs = split_infotext(grid.info["parameters"])
    assert pairs["Script"] == "X/Y/Z plot" and pairs["X Type"] == "Steps" and pairs["X Values"] == "2, 4"
    assert pairs["Y Type"] == "Seed" and pairs["Fixed Y Values"] == "11, 12"
    assert info["infotexts"][0] == grid.info["parameters"] and len(info["infotexts"]) == 5

    new = [saved for saved in outputs.listing("txt2img") if saved.path not in before]
    assert len(new) == 5  # the four cells and the grid, in one day's folder
    assert len({saved.day for saved in new}) == 1
    saved_grid = max(new, key=lambda saved: saved.number)  # saved after its cells
    with open(saved_grid.path, "rb") as f:
        assert Image.open(io.BytesIO(f.read())).size == grid.size


def test_without_lone_images_only_the_grid_comes_back(api):
    body = {"prompt": "a red fox", **SMALL, "script_name": "X/Y/Z plot",
            "script_args": script_args(CFG, "3, 9", lone=False, legend=False)}
    answer = requests.post(f"{api}/txt2img", json=body, timeout=300).json()
    assert len(answer["images"]) == 1 and len(info_of(answer)["infotexts"]) == 1
    assert decoded(answer["images"][0]).size == (128, 64)  # no legend: the two cells side by side


def test_bad_plots_are_refused_naming_script_args(api):
    cases = [
        (script_args(SEED, "1-8", STEPS, "1-8", CFG, "1, 2"), 7, "Z values: 8 x 8 x 2 = 128 cells"),
        (script_args(2, "1, 2"), 0, "'Var. seed' is not plotted here"),
        (script_args(STEPS, "2, x"), 1, "'x' is not a whole number"),
        (script_args(99, "1"), 0, "x_type: an index into the txt2img axis list"),
        (script_args(9, "Euler, Nope"), 1, "unknown sampler 'Nope'"),
    ]
    for args, position, message in cases:
        answer = requests.post(f"{api}/txt2img", json={**SMALL, "script_name": "x/y/z plot", "script_args": args},
                               timeout=60)
        assert answer.status_code == 422, answer.text
        detail = answer.json()["detail"][0]
        assert detail["loc"] == ["body", "script_args", position] and message in detail["msg"], detail
    answer = requests.post(f"{api}/txt2img", json={**SMALL, "n_iter": 2, "script_name": "x/y/z plot",
                                                    "script_args": script_args(STEPS, "2, 4")}, timeout=60)
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["body", "n_iter"]
    ok = requests.post(f"{api}/txt2img", json={"prompt": "still serving", **SMALL}, timeout=120)
    assert ok.status_code == 200 and len(ok.json()["images"]) == 1
