"""Prompt styles in the tabs: the picker lists the gateway's styles.csv, the picked ones apply to both
prompts in order before the service sees them, and an unknown one is named."""

from __future__ import annotations

import io

import numpy as np
import pytest
from gradio_client.exceptions import AppError
from PIL import Image

from services.client import make_request
from tests.conftest import RunningGateway

CSV = 'name,prompt,negative_prompt\nPhoto,"{prompt}, photograph",drawing\nSharp,sharp focus,blurry\n'
SETTINGS = {"prompt": "a fox", "negative_prompt": "ugly", "steps": 2, "width": 64, "height": 64, "seed": 9,
            "scheduler": "euler"}


@pytest.fixture(scope="module")
def styled(services, tmp_path_factory):
    path = tmp_path_factory.mktemp("styles") / "styles.csv"
    path.write_text(CSV, encoding="utf-8")
    gw = RunningGateway({m: s.address for m, s in services.items()}, styles=str(path))
    yield gw, path
    gw.close()


def test_picked_styles_apply_in_order_and_the_image_is_the_merged_prompts(styled, services):
    gw, _path = styled
    picker = next(c for c in gw.demo.blocks.values() if getattr(c, "elem_id", None) == "txt2img-styles")
    assert [value for _label, value in picker.choices] == ["Photo", "Sharp"]
    gallery, _seeds, infotext = gw.client().predict(**SETTINGS, styles=["Sharp", "Photo"], api_name="/txt2img")
    prompt, negative = "a fox, sharp focus, photograph", "ugly, blurry, drawing"
    assert infotext.startswith(f"{prompt}\nNegative prompt: {negative}\n")
    direct = services["txt2img"].client.generate(make_request(
        "txt2img", prompt=prompt, negative_prompt=negative, seed=9, steps=2, width=64, height=64,
        scheduler="euler"))
    made = np.asarray(Image.open(gallery[0]["image"]).convert("RGB"))
    assert np.array_equal(made, np.asarray(Image.open(io.BytesIO(direct.images[0].data)).convert("RGB")))


def test_an_unknown_style_is_named_and_the_tab_keeps_working(styled):
    gw, _path = styled
    client = gw.client()
    with pytest.raises(AppError, match=r"Txt2Img: no style named 'Nope'; the styles are: Photo, Sharp"):
        client.predict(**SETTINGS, styles=["Nope"], api_name="/txt2img")
    assert client.predict(**SETTINGS, api_name="/txt2img")[1] == "9"  # no styles: the prompts as typed
