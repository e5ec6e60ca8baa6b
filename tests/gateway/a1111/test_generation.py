"""POST /sdapi/v1/txt2img and /img2img on real services: A1111's fields in, A1111's answer out, and the
same pixels the gRPC service gives for the same parameters."""

from __future__ import annotations

import base64
import json
import threading

import numpy as np
import pytest
import requests

from imagegen.v1.infotext import split_infotext
from services.client import make_request
from services.client.infotext import read_infotext
from tests.conftest import RunningGateway, RunningService, box_mask, png

from .conftest import SMALL, b64, decoded, info_of, pixels


def test_txt2img_answers_as_a1111_with_the_services_own_pngs(api):
    answer = requests.post(f"{api}/txt2img", json={"prompt": "a red fox", "seed": 7, "batch_size": 2, "n_iter": 2,
                                                    "sampler_name": "Euler a", **SMALL}, timeout=120).json()
    info = info_of(answer)
    assert len(answer["images"]) == 4 and info["all_seeds"] == [7, 8, 9, 10]  # image i gets seed + i
    assert info["seed"] == 7 and info["index_of_first_image"] == 0 and info["sd_model_name"] == "tiny"
    assert (info["width"], info["height"], info["steps"], info["cfg_scale"]) == (64, 64, 4, 7.0)
    assert info["sampler_name"] == "Euler a" and len(info["infotexts"]) == 4
    for key in ("all_prompts", "all_negative_prompts", "subseed", "all_subseeds", "job_timestamp", "clip_skip",
                "extra_generation_params", "styles", "sd_model_hash", "is_using_inpainting_conditioning", "version"):
        assert key in info
    # The parameters echo the request with A1111's defaults filled in.
    assert answer["parameters"]["n_iter"] == 2 and answer["parameters"]["cfg_scale"] == 7.0
    assert answer["parameters"]["send_images"] is True and answer["parameters"]["save_images"] is False
    for i, text in enumerate(answer["images"]):
        image = decoded(text)
        assert image.format == "PNG" and image.size == (64, 64)
        # The service's bytes: its `parameters` chunk is there and parses as A1111's infotext.
        prompt, _negative, pairs = split_infotext(read_infotext(base64.b64decode(text)))
        assert prompt == "a red fox" and pairs["Seed"] == str(7 + i) and pairs["Sampler"] == "Euler a"
        assert info["infotexts"][i] == image.info["parameters"]


def test_each_api_image_equals_the_services_image(api, services):
    body = {"prompt": "a lighthouse", "negative_prompt": "fog", "seed": 42, "cfg_scale": 6.5,
            "sampler_name": "DPM++ 2M", "scheduler": "Karras", "batch_size": 2, **SMALL}
    answer = requests.post(f"{api}/txt2img", json=body, timeout=120).json()
    direct = services["txt2img"].client.generate(make_request(
        "txt2img", "a lighthouse", negative_prompt="fog", seed=42, guidance_scale=6.5, scheduler="dpmpp_2m_karras",
        num_images=2, **SMALL))
    assert len(answer["images"]) == 2
    for text, image in zip(answer["images"], direct.images):
        assert np.array_equal(pixels(base64.b64decode(text)), pixels(image.data))


def test_img2img_without_a_mask_goes_to_img2img_with_one_to_inpaint(api, services):
    image = png((64, 64), seed=3)
    common = {"prompt": "oil painting", "seed": 5, "denoising_strength": 0.5, "init_images": [b64(image, prefix=True)],
              **SMALL}
    plain = requests.post(f"{api}/img2img", json=common, timeout=120).json()
    direct = services["img2img"].client.generate(make_request(
        "img2img", "oil painting", image=image, seed=5, strength=0.5, fit="resize", scheduler="euler",
        guidance_scale=7.0, **SMALL))
    assert np.array_equal(pixels(base64.b64decode(plain["images"][0])), pixels(direct.images[0].data))
    assert plain["parameters"]["init_images"] is None and plain["parameters"]["mask"] is None  # as A1111
    assert info_of(plain)["denoising_strength"] == 0.5

    mask = box_mask()
    masked = requests.post(f"{api}/img2img", json={**common, "mask": b64(mask), "mask_blur": 2,
                                                    "inpainting_mask_invert": 1}, timeout=120).json()
    direct = services["inpaint"].client.generate(make_request(
        "inpaint", "oil painting", image=image, mask=mask, mask_blur=2, invert_mask=True, seed=5, strength=0.5,
        fit="resize", scheduler="euler", guidance_scale=7.0, only_masked=True, only_masked_padding=0,
        masked_content="fill", **SMALL))  # the API's defaults: only masked, no padding, fill
    assert np.array_equal(pixels(base64.b64decode(masked["images"][0])), pixels(direct.images[0].data))
    assert "Mask blur: 2" in info_of(masked)["infotexts"][0]


def test_inpaint_area_and_masked_content_reach_the_inpaint_service(api, services):
    image, mask = png((64, 64), seed=3), box_mask()
    for fields, keywords in (
            ({"inpaint_full_res": False, "inpainting_fill": 1}, {"only_masked": False, "masked_content": "original"}),
            ({"inpaint_full_res": True, "inpaint_full_res_padding": 8, "inpainting_fill": 2},
             {"only_masked": True, "only_masked_padding": 8, "masked_content": "latent noise"}),
            ({"inpainting_fill": 3}, {"only_masked": True, "only_masked_padding": 0, "masked_content": "latent nothing"})):
        answer = requests.post(f"{api}/img2img", json={"init_images": [b64(image)], "mask": b64(mask), "seed": 4,
                                                        "denoising_strength": 0.6, **fields, **SMALL},
                               timeout=120).json()
        direct = services["inpaint"].client.generate(make_request(
            "inpaint", image=image, mask=mask, seed=4, strength=0.6, fit="resize", scheduler="euler",
            guidance_scale=7.0, mask_blur=4, **keywords, **SMALL))
        assert np.array_equal(pixels(base64.b64decode(answer["images"][0])), pixels(direct.images[0].data)), fields


def test_resize_modes(api, services):
    wide = png((128, 64), seed=1)
    for resize_mode, fit in ((0, "resize"), (1, "crop"), (2, "fill"), (3, "latent")):
        answer = requests.post(f"{api}/img2img", json={"init_images": [b64(wide)], "resize_mode": resize_mode,
                                                        "seed": 1, **SMALL}, timeout=120).json()
        direct = services["img2img"].client.generate(make_request(
            "img2img", image=wide, seed=1, strength=0.75, fit=fit, scheduler="euler", guidance_scale=7.0, **SMALL))
        assert np.array_equal(pixels(base64.b64decode(answer["images"][0])), pixels(direct.images[0].data)), fit


def test_unknown_keys_are_ignored_and_null_is_the_default(api):
    answer = requests.post(f"{api}/txt2img", json={
        "prompt": "a fox", "seed": None, "sampler_name": None, "cfg_scale": None, "n_iter": None,
        "not_an_a1111_field": {"x": 1}, "hr_upscaler": "Latent", "eta": 0.5, "styles": [], **SMALL,
    }, timeout=120).json()
    info = info_of(answer)
    assert len(answer["images"]) == 1 and info["cfg_scale"] == 7.0 and info["sampler_name"] == "Euler"
    assert 0 <= info["seed"] < 2**32  # -1: a random seed, reported


def test_clip_skip_and_loras_and_legacy_sampler_names_reach_the_service(api):
    answer = requests.post(f"{api}/txt2img", json={
        "prompt": "a fox", "seed": 3, "sampler_name": "DPM++ 2M Karras", "scheduler": "Automatic",
        "override_settings": {"CLIP_stop_at_last_layers": 2}, **SMALL}, timeout=120).json()
    info = info_of(answer)
    assert info["clip_skip"] == 2 and "Clip skip: 2" in info["infotexts"][0]
    # As A1111 1.9+: the legacy name is DPM++ 2M with the Karras schedule, answered so.
    assert info["sampler_name"] == "DPM++ 2M" and info["extra_generation_params"]["Schedule type"] == "Karras"


@pytest.mark.parametrize("sampler, schedule, ours", [
    ("DPM++ 3M SDE", "Exponential", ("dpmpp_3m_sde", "exponential")),
    ("Euler", "sgm_uniform", ("euler", "sgm_uniform")),
    ("DPM2 a", "Automatic", ("dpm2_a", "")),
    ("LMS Karras", None, ("lms", "karras")),
])
def test_a1111_sampler_and_scheduler_names_are_the_services_pair(api, services, sampler, schedule, ours):
    body = {"prompt": "a fox", "seed": 5, "cfg_scale": 7.0, "sampler_name": sampler, **SMALL}
    answer = requests.post(f"{api}/txt2img", json={**body, **({"scheduler": schedule} if schedule else {})},
                           timeout=120).json()
    direct = services["txt2img"].client.generate(make_request(
        "txt2img", "a fox", seed=5, guidance_scale=7.0, scheduler=ours[0], schedule_type=ours[1],
        **SMALL)).images[0]
    assert np.array_equal(pixels(base64.b64decode(answer["images"][0])), pixels(direct.data))
    info = info_of(answer)
    assert info["sampler_name"] == sampler.removesuffix(" Karras")
    assert info["infotexts"][0] == direct.infotext


def test_send_images_false_and_save_images(services, tmp_path):
    gw = RunningGateway({mode: s.address for mode, s in services.items()}, outputs_dir=str(tmp_path))
    try:
        api = gw.url + "sdapi/v1"
        answer = requests.post(f"{api}/txt2img", json={"seed": 1, "send_images": False, **SMALL}, timeout=120).json()
        assert answer["images"] == [] and info_of(answer)["all_seeds"] == [1]
        assert not list(tmp_path.rglob("*.png"))  # A1111's API default: nothing kept unless asked
        requests.post(f"{api}/txt2img", json={"seed": 2, "save_images": True, **SMALL}, timeout=120).raise_for_status()
        assert [p.name.split("-")[-1] for p in tmp_path.rglob("*.png")] == ["2.png"]
    finally:
        gw.close()


def test_eight_concurrent_calls_all_succeed_and_share_the_services_batches(services):
    own = RunningService("txt2img")
    step_engine = own.client.info().engine == "step"
    addresses = {mode: s.address for mode, s in services.items()}
    gw = RunningGateway({**addresses, "txt2img": own.address})
    try:
        api = gw.url + "sdapi/v1"
        answers = [None] * 8
        start = threading.Barrier(8)

        def call(i):
            start.wait()
            answers[i] = requests.post(f"{api}/txt2img", json={"prompt": f"fox {i}", "seed": i, "steps": 40,
                                                                "width": 64, "height": 64}, timeout=300)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert [a.status_code for a in answers] == [200] * 8
        assert [info_of(a.json())["all_seeds"] for a in answers] == [[i] for i in range(8)]
        if step_engine:  # one UNet call held rows of several requests (a guided image is two rows)
            calls, alone = own.metric("imagegen_step_rows_count"), own.metric("imagegen_step_rows_bucket", le="2.0")
        else:  # one pipeline call held several requests
            calls, alone = (own.metric("imagegen_batch_requests_count"),
                            own.metric("imagegen_batch_requests_bucket", le="1.0"))
        assert calls > alone, (calls, alone)
    finally:
        gw.close()
        own.stop()


def test_the_openapi_page_lists_the_routes(gateway):
    assert requests.get(gateway.url + "docs", timeout=10).status_code == 200
    paths = json.loads(requests.get(gateway.url + "openapi.json", timeout=10).text)["paths"]
    for path in ("txt2img", "img2img", "progress", "interrupt", "skip", "options", "sd-models"):
        assert f"/sdapi/v1/{path}" in paths
