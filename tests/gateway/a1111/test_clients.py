"""The exact request sequences of Open WebUI and SillyTavern, as raw HTTP (read from their sources:
open-webui backend/open_webui/routers/images.py, SillyTavern src/endpoints/stable-diffusion.js and
public/scripts/extensions/stable-diffusion/index.js)."""

from __future__ import annotations

import base64
import time

import pytest
import requests

from tests.conftest import RunningGateway, wait_for

from .conftest import SLOW, Call, decoded, info_of, title_of


def basic(auth: str) -> dict:
    """Both clients build the header themselves from a "user:pass" text, empty when unset."""
    return {"authorization": "Basic " + base64.b64encode(auth.encode()).decode()}


@pytest.mark.parametrize("auth", ["", "owui:secret"])
def test_open_webui_sequence(services, auth):
    gw = RunningGateway({m: s.address for m, s in services.items()},
                        api_auth=(("owui", "secret"),) if auth else None)
    base, headers = gw.url.rstrip("/"), basic(auth)
    try:
        # Verify URL, then the model list (id = title), then the current model.
        assert requests.get(f"{base}/sdapi/v1/options", headers=headers, timeout=30).ok
        models = requests.get(f"{base}/sdapi/v1/sd-models", headers=headers, timeout=30).json()
        ids = [{"id": m["title"], "name": m["model_name"]} for m in models]
        assert ids == [{"id": title_of(services["txt2img"]), "name": "tiny"}]
        options = requests.get(f"{base}/sdapi/v1/options", headers=headers, timeout=30).json()
        assert options["sd_model_checkpoint"] == ids[0]["id"]
        # Set model: the whole options dict back, with the checkpoint changed (here: to the same title,
        # plus a key of the admin's that A1111 would keep).
        options["sd_model_checkpoint"] = ids[0]["id"]
        options["some_other_setting"] = [1, 2]
        answer = requests.post(f"{base}/sdapi/v1/options", json=options, headers=headers, timeout=30)
        answer.raise_for_status()
        assert requests.get(f"{base}/sdapi/v1/options", headers=headers, timeout=30).json()["some_other_setting"] == [
            1, 2]
        # Generate: {prompt, batch_size: n, width, height, steps, negative_prompt} + AUTOMATIC1111_PARAMS.
        data = {"prompt": "a cat in a hat", "batch_size": 2, "width": 64, "height": 64, "steps": 4,
                "negative_prompt": "blurry", "cfg_scale": 6, "sampler_name": "Euler a", "scheduler": "Automatic"}
        res = requests.post(f"{base}/sdapi/v1/txt2img", json=data, headers=headers, timeout=120).json()
        assert len(res["images"]) == 2 and info_of(res)["negative_prompt"] == "blurry"
        for image in res["images"]:
            assert "," not in image and decoded(image).size == (64, 64)  # image/png, no data: prefix
    finally:
        gw.close()


def sillytavern_body(url: str, auth: str) -> dict:
    """generateAutoImage's body, forwarded whole by the server (url and auth included)."""
    return {
        "url": url, "auth": auth,
        "prompt": "a knight, portrait", "negative_prompt": "lowres", "sampler_name": "DPM++ 2M",
        "scheduler": "karras", "steps": 4, "cfg_scale": 7, "width": 64, "height": 64, "restore_faces": False,
        "enable_hr": False, "hr_upscaler": "Latent", "hr_scale": 2.0, "denoising_strength": 0.7,
        "hr_second_pass_steps": 0,  # seed: omitted when < 0
        "override_settings": {"CLIP_stop_at_last_layers": 1}, "override_settings_restore_afterwards": True,
        "clip_skip": 1, "save_images": True, "send_images": True, "do_not_save_grid": False,
        "do_not_save_samples": False,
    }


def test_sillytavern_sequence(services, tmp_path):
    gw = RunningGateway({m: s.address for m, s in services.items()}, api_auth=(("st", "pw"),),
                        outputs_dir=str(tmp_path))
    # SillyTavern replaces the URL's path: whatever the user typed, the API must be at the root.
    url = gw.url + "some/sub/path"
    root, headers = gw.url.rstrip("/"), basic("st:pw")
    try:
        assert requests.get(f"{root}/sdapi/v1/options", headers=headers, timeout=30).ok  # ping
        assert requests.get(f"{root}/sdapi/v1/options", headers=headers, timeout=30).json()["sd_model_checkpoint"]
        titles = [m["title"] for m in requests.get(f"{root}/sdapi/v1/sd-models", headers=headers, timeout=30).json()]
        # set-model: POST the one key, then poll /progress until idle (progress 0 and job_count 0).
        assert requests.post(f"{root}/sdapi/v1/options", json={"sd_model_checkpoint": titles[0]}, headers=headers,
                             timeout=30).ok
        for _ in range(10):
            state = requests.get(f"{root}/sdapi/v1/progress", headers=headers, timeout=30).json()
            if state["progress"] == 0.0 and state["state"]["job_count"] == 0:
                break
            time.sleep(2)
        else:
            pytest.fail("never idle")
        # generate: the whole body, keys A1111 ignores included; images[0] read as a PNG.
        data = requests.post(f"{root}/sdapi/v1/txt2img", json=sillytavern_body(url, "st:pw"), headers=headers,
                             timeout=120)
        assert data.ok, data.text
        assert decoded(data.json()["images"][0]).format == "PNG"
        assert "Sampler: DPM++ 2M" in info_of(data.json())["infotexts"][0]
        assert list(tmp_path.rglob("*.png"))  # save_images: true keeps it, as A1111 does
        # The user stops: the browser's socket closes, ST posts /interrupt and aborts its fetch.
        call = Call(f"{root}/sdapi/v1/txt2img", {**sillytavern_body(url, "st:pw"), **SLOW}, headers=headers)
        assert wait_for(lambda: requests.get(f"{root}/sdapi/v1/progress", headers=headers,
                                             timeout=30).json()["state"]["sampling_step"] > 0, timeout=60)
        assert requests.post(f"{root}/sdapi/v1/interrupt", headers=headers, timeout=30).ok
        assert call.result().status_code == 200
        assert wait_for(lambda: requests.get(f"{root}/sdapi/v1/progress", headers=headers,
                                             timeout=30).json()["state"]["job_count"] == 0, timeout=10)
    finally:
        gw.close()


def test_a_caller_that_goes_away_stops_its_generation(services):
    # SillyTavern aborts its fetch when the user stops; a script may just time out. Either way the
    # connection closes and the batches stop at their next step, without an /interrupt. (A gateway with
    # a long deadline: the service refuses up front what its estimate says cannot end in time.)
    gw = RunningGateway({m: s.address for m, s in services.items()}, timeout_s=1800)
    api = gw.url + "sdapi/v1"
    steps_before = services["txt2img"].steps_run
    try:
        with pytest.raises(requests.Timeout):
            requests.post(f"{api}/txt2img", json={"seed": 1, "n_iter": 2, "steps": 150, "width": 512,
                                                  "height": 512}, timeout=(10, 1.5))
        assert wait_for(lambda: requests.get(f"{api}/progress", timeout=30).json()["state"]["job_count"] == 0,
                        timeout=10)
        assert services["txt2img"].steps_run - steps_before < 2 * 150  # stopped well before the end
    finally:
        gw.close()
