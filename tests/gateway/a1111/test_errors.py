"""Bad input gets A1111-shaped errors naming the field, and the next call still works."""

from __future__ import annotations

import requests

from tests.conftest import RunningGateway, RunningService, box_mask, png

from .conftest import SMALL, Call, b64


def fields(response) -> list:
    """The fields a 422 names, as FastAPI's validation shape gives them (loc after "body")."""
    assert response.status_code == 422, response.text
    return [".".join(str(part) for part in item["loc"][1:]) for item in response.json()["detail"]]


def assert_still_works(api):
    answer = requests.post(f"{api}/txt2img", json={"seed": 1, **SMALL}, timeout=120)
    assert answer.status_code == 200 and len(answer.json()["images"]) == 1


def test_wrong_types_and_bad_values_name_the_field(api):
    post = lambda path, body: requests.post(f"{api}/{path}", json=body, timeout=120)
    assert fields(post("txt2img", {"width": "wide"})) == ["width"]
    assert fields(post("txt2img", {"steps": [4]})) == ["steps"]
    assert fields(post("txt2img", {"n_iter": 0})) == ["n_iter"]
    # The service's INVALID_ARGUMENT (params.width), named as A1111 names it.
    bad = post("txt2img", {"width": 13, "height": 64, "steps": 2})
    assert fields(bad) == ["width"] and "multiple of 8" in bad.json()["detail"][0]["msg"]
    assert fields(post("txt2img", {"cfg_scale": 500, **SMALL})) == ["cfg_scale"]
    assert fields(post("txt2img", {"sampler_name": "Not A Sampler", **SMALL})) == ["sampler_name"]
    assert fields(post("txt2img", {"sampler_name": "Euler a", "scheduler": "Karras", **SMALL})) == ["scheduler"]
    assert fields(post("txt2img", {"prompt": "<lora:nobody:1>", **SMALL})) == ["prompt"]
    assert fields(post("txt2img", {"override_settings": {"CLIP_stop_at_last_layers": 99}, **SMALL})) == [
        "override_settings.CLIP_stop_at_last_layers"]
    assert fields(post("txt2img", {"override_settings": {"sd_model_checkpoint": "nope"}, **SMALL})) == [
        "override_settings.sd_model_checkpoint"]
    # The hires fix's fields, by A1111's names (hr_scale past 4 is the service's check of hires.scale).
    assert fields(post("txt2img", {"enable_hr": True, "hr_upscaler": "Latent (bilinear)", **SMALL})) == [
        "hr_upscaler"]
    assert fields(post("txt2img", {"enable_hr": True, "hr_checkpoint_name": "other", **SMALL})) == [
        "hr_checkpoint_name"]
    assert fields(post("txt2img", {"enable_hr": True, "hr_sampler_name": "DPM adaptive", **SMALL})) == [
        "hr_sampler_name"]
    assert fields(post("img2img", {"init_images": ["%%% not base64"], **SMALL})) == ["init_images.0"]
    assert fields(post("img2img", {"init_images": [b64(png())], "mask": "data:image/png;base64,@@", **SMALL})) == [
        "mask"]
    assert fields(post("img2img", {"init_images": [b64(b"not an image at all")], **SMALL})) == ["init_images.0"]
    assert fields(post("img2img", {"prompt": "no image", **SMALL})) == ["init_images"]
    assert fields(post("img2img", {"init_images": [b64(png())], "resize_mode": 4, **SMALL})) == ["resize_mode"]
    assert fields(post("img2img", {"init_images": [b64(png())], "mask": b64(png()), "inpainting_fill": 4,
                                   **SMALL})) == ["inpainting_fill"]
    assert fields(post("img2img", {"init_images": [b64(png())], "mask": b64(png()), "inpaint_full_res_padding": 999,
                                   **SMALL})) == ["inpaint_full_res_padding"]
    assert fields(post("img2img", {"init_images": ["http://example.com/a.png"], **SMALL})) == ["init_images.0"]
    assert_still_works(api)


def test_numbers_past_the_contract_s_types_name_the_field_not_a_500(api):
    post = lambda path, body: requests.post(f"{api}/{path}", json=body, timeout=120)
    huge = (("steps", 10**12), ("steps", -1), ("width", 2**40), ("batch_size", 10**12), ("seed", 2**70))
    for key, value in huge:
        assert fields(post("txt2img", {**SMALL, key: value})) == [key]
    # The second batch's seed would pass 64 bits.
    assert fields(post("txt2img", {**SMALL, "seed": 2**64 - 1, "n_iter": 2})) == ["seed"]
    assert fields(post("txt2img", {**SMALL, "override_settings": {"CLIP_stop_at_last_layers": 10**30}})) == [
        "override_settings.CLIP_stop_at_last_layers"]
    masked = {**SMALL, "init_images": [b64(png())], "mask": b64(box_mask())}
    assert fields(post("img2img", {**masked, "inpaint_full_res_padding": -5})) == ["inpaint_full_res_padding"]
    assert fields(post("img2img", {**masked, "mask_blur": 2**40})) == ["mask_blur"]
    # NaN and Infinity (Python's JSON reader takes them) would make info's JSON text unreadable to a browser.
    for text in ('{"eta": NaN}', '{"denoising_strength": Infinity}'):
        answer = requests.post(f"{api}/txt2img", data=text, headers={"Content-Type": "application/json"},
                               timeout=60)
        assert fields(answer) == [text[2:text.index('"', 2)]]
    assert_still_works(api)


def test_a_huge_number_echoed_or_kept_in_options_never_breaks_an_answer(api):
    """An integer past 64 bits in a field nothing reads is echoed as sent; one POSTed to /options does not
    turn every later GET /options (Open WebUI's first call for each image) into a 500."""
    answer = requests.post(f"{api}/txt2img", json={**SMALL, "seed": 1, "hr_resize_x": 2**70, "subseed": 2**70,
                                                   "script_args": [2**70]}, timeout=120)
    assert answer.status_code == 200, answer.text
    echoed = answer.json()["parameters"]
    assert echoed["hr_resize_x"] == 2**70 and echoed["script_args"] == [2**70]
    try:
        assert requests.post(f"{api}/options", json={"review_huge": 2**70}, timeout=60).status_code == 200
        got = requests.get(f"{api}/options", timeout=60)
        assert got.status_code == 200 and got.json()["review_huge"] == 2**70
    finally:
        requests.post(f"{api}/options", json={"review_huge": 0}, timeout=60)
    assert_still_works(api)


def test_null_options_are_their_defaults_again(api):
    """A null checkpoint (what GET gives while no service answers, POSTed back whole) must not stay: GET's
    sd_model_checkpoint is a /sd-models title again, and null clip skip or format is the default."""
    title = requests.get(f"{api}/sd-models", timeout=60).json()[0]["title"]
    nulls = {"sd_model_checkpoint": None, "CLIP_stop_at_last_layers": None, "samples_format": None}
    for body in ({"CLIP_stop_at_last_layers": 2}, nulls):
        assert requests.post(f"{api}/options", json=body, timeout=60).status_code == 200
    options = requests.get(f"{api}/options", timeout=60).json()
    assert [options[key] for key in nulls] == [title, 1, "png"]
    assert_still_works(api)


def test_unknown_scripts_are_refused_as_a1111_does(api):
    for body in ({"script_name": "prompt matrix"}, {"alwayson_scripts": {"ADetailer": {"args": []}}}):
        answer = requests.post(f"{api}/txt2img", json={**body, **SMALL}, timeout=60)
        assert answer.status_code == 422 and "not found" in answer.json()["detail"]
        assert set(answer.json()) == {"error", "detail", "body", "errors"}  # A1111's handler's shape


def test_a_body_that_is_not_json_or_too_large(api):
    answer = requests.post(f"{api}/txt2img", data=b"{not json", headers={"Content-Type": "application/json"},
                           timeout=60)
    assert answer.status_code == 422 and "detail" in answer.json()
    # 40 MB: refused by its Content-Length, before the body is read.
    answer = requests.post(f"{api}/txt2img", data=b"x" * (40 * 1024 * 1024),
                           headers={"Content-Type": "application/json"}, timeout=60)
    assert answer.status_code == 413 and "32 MB" in answer.json()["detail"]

    def chunks():  # no Content-Length: cut off as it passes the bound
        for _ in range(40):
            yield b"x" * (1024 * 1024)
    try:
        answer = requests.post(f"{api}/txt2img", data=chunks(), headers={"Content-Type": "application/json"},
                               timeout=60)
        assert answer.status_code == 413
    except requests.ConnectionError:  # the server may close before the client finished sending
        pass
    assert_still_works(api)


def test_errors_never_show_a_traceback_or_an_address(api, services):
    answer = requests.post(f"{api}/txt2img", json={"width": 13, "height": 64}, timeout=60)
    assert services["txt2img"].address not in answer.text and "Traceback" not in answer.text


def test_a_service_down_is_503_with_retry_after(services):
    gone = RunningService("txt2img", load=False)
    address = gone.address
    gone.stop()
    gw = RunningGateway({**{m: s.address for m, s in services.items()}, "txt2img": address}, timeout_s=20,
                        retries=0)
    try:
        answer = requests.post(gw.url + "sdapi/v1/txt2img", json=SMALL, timeout=60)
        assert answer.status_code == 503 and int(answer.headers["Retry-After"]) >= 1
        assert address not in answer.text and answer.json()["error"] == "Unreachable"
        # The other modes are not affected.
        img2img = requests.post(gw.url + "sdapi/v1/img2img", json={"init_images": [b64(png())], **SMALL}, timeout=120)
        assert img2img.status_code == 200
    finally:
        gw.close()


def test_a_service_still_loading_is_503_with_retry_after(services):
    loading = RunningService("txt2img", load=False)  # serving its port, its model not loaded yet
    gw = RunningGateway({**{m: s.address for m, s in services.items()}, "txt2img": loading.address}, retries=0)
    try:
        answer = requests.post(gw.url + "sdapi/v1/txt2img", json=SMALL, timeout=60)
        assert answer.status_code == 503 and int(answer.headers["Retry-After"]) >= 1, answer.text
        assert loading.address not in answer.text
        loading.runtime.load()
        assert requests.post(gw.url + "sdapi/v1/txt2img", json=SMALL, timeout=120).status_code == 200
    finally:
        gw.close()
        loading.stop()


def test_a_full_queue_is_503_with_the_services_retry_hint(services):
    own = RunningService("txt2img", "--queue-size", "1", "--warmup", "false")
    gw = RunningGateway({**{m: s.address for m, s in services.items()}, "txt2img": own.address}, retries=0)
    try:
        calls = [Call(gw.url + "sdapi/v1/txt2img", {"seed": i, "steps": 40, "width": 128, "height": 128})
                 for i in range(6)]
        statuses = [call.result() for call in calls]
        busy = [r for r in statuses if r.status_code == 503]
        assert busy and all(int(r.headers["Retry-After"]) >= 1 and r.json()["error"] == "QueueFull" for r in busy)
        assert any(r.status_code == 200 for r in statuses)
    finally:
        gw.close()
        own.stop()


def test_a_deadline_is_504(services):
    gw = RunningGateway({m: s.address for m, s in services.items()}, timeout_s=3)
    try:
        answer = requests.post(gw.url + "sdapi/v1/txt2img", json={"steps": 150, "width": 1024, "height": 1024},
                               timeout=60)
        assert answer.status_code == 504 and answer.json()["error"] == "DeadlineExceeded"
    finally:
        gw.close()
