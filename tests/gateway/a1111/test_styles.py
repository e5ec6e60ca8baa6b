"""Styles through the A1111 API: /prompt-styles lists the gateway's styles.csv, a request's `styles`
apply to its prompts before the service sees them (the image is the service's for the merged prompt)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import requests

from services.client import make_request
from tests.conftest import RunningGateway

from .conftest import SMALL, info_of, pixels

CSV = ('name,prompt,negative_prompt\n'
       '"Photo","{prompt}, photograph","drawing"\n'
       '"Sharp","sharp focus","blurry"\n')


@pytest.fixture(scope="module")
def styled(services, tmp_path_factory):
    path = tmp_path_factory.mktemp("styles") / "styles.csv"
    path.write_text(CSV, encoding="utf-8")
    gw = RunningGateway({m: s.address for m, s in services.items()}, styles=str(path))
    yield gw.url + "sdapi/v1"
    gw.close()


def test_prompt_styles_lists_the_file(styled):
    assert requests.get(f"{styled}/prompt-styles", timeout=30).json() == [
        {"name": "Photo", "prompt": "{prompt}, photograph", "negative_prompt": "drawing"},
        {"name": "Sharp", "prompt": "sharp focus", "negative_prompt": "blurry"}]


def test_styles_apply_in_order_and_the_image_is_the_merged_prompts(styled, services):
    body = {"prompt": "a fox", "negative_prompt": "ugly", "styles": ["Photo", "Sharp"], "seed": 5,
            "sampler_name": "Euler", **SMALL}
    answer = requests.post(f"{styled}/txt2img", json=body, timeout=120).json()
    info = info_of(answer)
    prompt, negative = "a fox, photograph, sharp focus", "ugly, drawing, blurry"
    assert info["prompt"] == "a fox" and info["styles"] == ["Photo", "Sharp"]  # as sent, as A1111's
    assert info["all_prompts"] == [prompt] and info["all_negative_prompts"] == [negative]
    assert info["infotexts"][0].startswith(f"{prompt}\nNegative prompt: {negative}\n")
    assert answer["parameters"]["prompt"] == "a fox"
    direct = services["txt2img"].client.generate(make_request(
        "txt2img", prompt=prompt, negative_prompt=negative, seed=5, scheduler="euler", guidance_scale=7.0,
        **SMALL))
    assert np.array_equal(pixels(base64.b64decode(answer["images"][0])), pixels(direct.images[0].data))


def test_an_unknown_style_is_a_422_naming_styles_and_the_ones_there_are(styled):
    refused = requests.post(f"{styled}/txt2img", json={"prompt": "a fox", "styles": ["Photo", "Nope"], **SMALL},
                            timeout=60)
    assert refused.status_code == 422
    detail = refused.json()["detail"][0]
    assert detail["loc"] == ["body", "styles"] and "'Nope'" in detail["msg"] and "Photo, Sharp" in detail["msg"]


def test_a_gateway_without_a_styles_file_lists_none_and_refuses_a_style(api):
    assert requests.get(f"{api}/prompt-styles", timeout=30).json() == []
    refused = requests.post(f"{api}/txt2img", json={"prompt": "a fox", "styles": ["Photo"], **SMALL}, timeout=60)
    assert refused.status_code == 422 and "no --styles file" in json.dumps(refused.json())

