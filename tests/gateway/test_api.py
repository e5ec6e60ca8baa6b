"""The gateway driven as an API with gradio_client: /txt2img, /img2img, /inpaint on real services."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from gateway_ui.hires import HIRES_INPUTS
from imagegen.v1.infotext import split_infotext
from services.client.infotext import read_infotext
from tests.conftest import RunningGateway, RunningService, box_mask, png, request_for

ADVANCED = {"steps": 4, "guidance": 7.5, "seed": 7, "num_images": 1, "scheduler": "model default"}


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def brush_layer(size=(96, 64)) -> bytes:
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    layer.paste((255, 255, 255, 255), (10, 10, 50, 50))
    buf = io.BytesIO()
    layer.save(buf, format="PNG")
    return buf.getvalue()


def gallery_images(gallery) -> list[Image.Image]:
    return [Image.open(item["image"]) for item in gallery]


def test_txt2img_returns_images_of_the_size_and_the_seeds(gateway):
    gallery, seeds, infotext = gateway.client().predict(
        "a red fox", "", ADVANCED["steps"], 7.5, 128, 64, 7, 2, "euler_a", api_name="/txt2img")
    images = gallery_images(gallery)
    assert [img.size for img in images] == [(128, 64), (128, 64)]
    assert seeds == "7, 8"
    assert "Seed: 7" in infotext and "Sampler: Euler a" in infotext
    # The service's own bytes reach the browser: the infotext chunk survives.
    assert split_infotext(read_infotext(Path(gallery[0]["image"]).read_bytes()))[2]["Seed"] == "7"


def test_random_seed_is_reported(gateway):
    _gallery, seeds, _info = gateway.client().predict(
        "a red fox", "", 2, 7.5, 64, 64, -1, 1, "model default", api_name="/txt2img")
    assert seeds.isdigit()


def test_img2img_returns_the_input_size_by_default_and_asked_size(gateway, tmp_path):
    image = handle_file(write(tmp_path, "in.png", png((96, 64))))
    gallery, seeds, infotext = gateway.client().predict(
        image, "oil painting", "", 0.6, 10, 7.5, 0, 0, 3, 1, "model default", api_name="/img2img")
    assert gallery_images(gallery)[0].size == (96, 64) and seeds == "3"
    assert split_infotext(infotext)[2]["Denoising strength"] == "0.6"
    gallery, _s, _i = gateway.client().predict(
        image, "oil painting", "", 0.6, 10, 7.5, 64, 128, 3, 1, "model default", api_name="/img2img")
    assert gallery_images(gallery)[0].size == (64, 128)


def test_inpaint_from_a_painted_layer_and_from_an_uploaded_mask(gateway, tmp_path):
    source = png((96, 64))
    editor = {"background": handle_file(write(tmp_path, "in.png", source)),
              "layers": [handle_file(write(tmp_path, "layer.png", brush_layer()))], "composite": None}
    args = ("a cat", "", 1.0, 0, 4, 7.5, 0, 0, 5, 1, "model default")
    painted, seeds, infotext = gateway.client().predict(editor, None, *args, api_name="/inpaint")
    result = gallery_images(painted)[0]
    assert result.size == (96, 64) and seeds == "5" and "Mask blur: 0" in infotext
    original = Image.open(io.BytesIO(source)).convert("RGB")
    assert result.convert("RGB").getpixel((90, 60)) == original.getpixel((90, 60))  # unpainted: kept
    assert result.convert("RGB").getpixel((30, 30)) != original.getpixel((30, 30))  # painted: repainted

    mask = handle_file(write(tmp_path, "mask.png", box_mask((96, 64), (10, 10, 50, 50))))
    no_layers = {"background": editor["background"], "layers": [], "composite": None}
    uploaded, _s, _i = gateway.client().predict(no_layers, mask, *args, api_name="/inpaint")
    assert gallery_images(uploaded)[0].convert("RGB").tobytes() == result.convert("RGB").tobytes()


def test_api_callers_pass_only_what_they_change_and_may_leave_the_mask_out(gateway, tmp_path):
    client = gateway.client()
    api = client.view_api(print_info=False, return_format="dict")
    params = {p["parameter_name"]: p for p in api["named_endpoints"]["/inpaint"]["parameters"]}
    assert list(params)[:3] == ["editor", "mask", "prompt"]  # the documented order holds
    assert params["mask"]["parameter_has_default"] and params["mask"]["parameter_default"] is None
    editor = {"background": handle_file(write(tmp_path, "in.png", png((96, 64)))),
              "layers": [handle_file(write(tmp_path, "layer.png", brush_layer()))], "composite": None}
    painted, seeds, infotext = client.predict(editor=editor, prompt="a cat", steps=3, seed=11, api_name="/inpaint")
    assert seeds == "11" and "Steps: 3" in infotext and gallery_images(painted)[0].size == (96, 64)
    _g, seeds, infotext = client.predict(prompt="a fox", seed=4, api_name="/txt2img")
    assert seeds == "4" and "Size: 64x64" in infotext  # the form's defaults: the service's, from GetInfo
    assert "Clip skip" not in infotext  # the form's default: the last layer
    assert "Sampler: DPM++ 2M, Schedule type: Karras," in infotext  # A1111's default sampler, Automatic


def test_clip_skip_is_the_last_shared_setting_and_mode_settings_added_since_come_after_it(gateway):
    client = gateway.client()
    api = client.view_api(print_info=False, return_format="dict")
    # The checkpoint (#22), then the styles (#23), came last of all, in every tab; then outpainting and the
    # hires fix (#25).
    later = {"/txt2img": ["model", "styles", *HIRES_INPUTS], "/img2img": ["fit", "model", "styles"],
             "/inpaint": ["only_masked", "only_masked_padding", "masked_content", "fit", "model", "styles",
                          "outpaint_left", "outpaint_right", "outpaint_up", "outpaint_down", "outpaint_fill"]}
    for name, added in later.items():
        names = [p["parameter_name"] for p in api["named_endpoints"][name]["parameters"]]
        page = ["schedule_type", "batch_count"] + (["invert_mask"] if name == "/inpaint" else [])
        assert names[-len(page):] == page  # the page's A1111 controls came last of all (#23)
        names = [n for n in names[:-len(page)] if not n.startswith("controlnet_")]  # a group of their own (#24)
        assert names[-1 - len(added):] == ["clip_skip", *added]  # positional callers of before keep working
    _g, _seeds, infotext = client.predict(prompt="a (red:1.2) fox", seed=4, clip_skip=2, api_name="/txt2img")
    assert "Clip skip: 2" in infotext


def test_numbers_out_of_range_are_named(gateway):
    with pytest.raises(AppError, match="Value -3 is less than minimum value 1"):  # Gradio's own check
        gateway.client().predict(prompt="a fox", steps=-3, api_name="/txt2img")
    with pytest.raises(AppError, match="Txt2Img: seed -5 is outside -1"):  # ours: a seed has no slider
        gateway.client().predict(prompt="a fox", seed=-5, api_name="/txt2img")


def test_inpaint_without_a_mask_says_what_to_do(gateway, tmp_path):
    editor = {"background": handle_file(write(tmp_path, "in.png", png())), "layers": [], "composite": None}
    with pytest.raises(AppError, match="paint over the part to repaint"):
        gateway.client().predict(editor, None, "a cat", "", 1.0, 4, 4, 7.5, 0, 0, 5, 1, "model default",
                                 api_name="/inpaint")


def test_bad_input_from_the_service_is_a_readable_error(gateway, tmp_path):
    odd = handle_file(write(tmp_path, "odd.png", png((20, 20))))  # too small to keep as is
    with pytest.raises(AppError) as err:
        gateway.client().predict(odd, "x", "", 0.6, 10, 7.5, 0, 0, 3, 1, "model default", api_name="/img2img")
    assert "img2img: invalid input - init_image.data" in str(err.value)


def test_ranges_and_choices_come_from_get_info(services, gateway):
    api = gateway.client().view_api(print_info=False, return_format="dict")
    params = {p["parameter_name"]: p for p in api["named_endpoints"]["/txt2img"]["parameters"]}
    info = services["txt2img"].client.info()
    scheduler_choices = params["scheduler"]["python_type"]["type"]
    for sampler in info.samplers:  # sent by our name, shown by A1111's
        assert sampler.name in scheduler_choices
    assert params["scheduler"]["parameter_default"] == "dpmpp_2m"  # A1111's default sampler, Automatic
    sampler = {c.elem_id: c for c in gateway.demo.blocks.values() if getattr(c, "elem_id", None)}["txt2img-scheduler"]
    assert ("DPM++ 2M", "dpmpp_2m") in sampler.choices and ("Euler a", "euler_a") in sampler.choices
    assert params["steps"]["parameter_default"] == info.defaults.num_inference_steps
    assert params["width"]["parameter_default"] == info.defaults.width  # 64 in the test services
    sliders = {c.elem_id: c for c in gateway.demo.blocks.values() if getattr(c, "elem_id", None)}
    assert sliders["txt2img-steps"].maximum == info.limits.max_steps
    assert sliders["txt2img-num-images"].maximum == info.limits.max_images
    assert sliders["txt2img-clip-skip"].maximum == info.max_clip_skip == 2  # the tiny text encoder's layers


def test_a_stopped_service_fails_its_tab_only(services, tmp_path):
    own = RunningService("txt2img", "--warmup", "false")
    addresses = {mode: service.address for mode, service in services.items()}
    addresses["txt2img"] = own.address
    gw = RunningGateway(addresses, timeout_s=10)
    try:
        client = gw.client()
        assert client.predict("fox", "", 2, 7.5, 64, 64, 1, 1, "model default", api_name="/txt2img")[1] == "1"
        own.stop()
        with pytest.raises(AppError) as err:
            client.predict("fox", "", 2, 7.5, 64, 64, 1, 1, "model default", api_name="/txt2img")
        message = str(err.value)
        # The browser is told the service is unavailable, not where it is (that is in the gateway's log).
        assert "txt2img service is unavailable" in message and own.address not in message
        assert str(own.port) not in message
        image = handle_file(write(tmp_path, "in.png", png()))
        _g, seeds, _i = client.predict(image, "x", "", 0.6, 10, 7.5, 0, 0, 3, 1, "model default",
                                       api_name="/img2img")
        assert seeds == "3"  # the other tabs keep working
        assert gw.gateway.status_line("txt2img") == "**txt2img** service: **unreachable**"
        assert gw.gateway.status_line("img2img") == "**img2img** service: **serving** · tiny (SD 1.x model)"
    finally:
        gw.close()


def test_login_when_a_username_and_password_are_set(services):
    from gradio_client import Client

    from gateway_ui.app import Gateway, build_ui, launch, make_backends
    from gateway_ui.hub import Hub
    from gateway_ui.config import GatewayConfig
    from tests.conftest import free_port

    config = GatewayConfig(addresses={m: s.address for m, s in services.items()}, port=free_port(),
                           username="ada", password="s3cret")
    backends = make_backends(config)
    demo = build_ui(Gateway(Hub(backends)))
    launch(demo, config, block=False)
    url = f"http://127.0.0.1:{config.port}/"
    try:
        with pytest.raises(Exception):
            Client(url, verbose=False)
        client = Client(url, verbose=False, auth=("ada", "s3cret"))
        assert client.predict("fox", "", 2, 7.5, 64, 64, 1, 1, "model default", api_name="/txt2img")[1] == "1"
    finally:
        demo.close()


def test_gateway_settings_from_flags_and_environment():
    from gateway_ui.config import load_config

    config = load_config([], environ={})
    assert config.host == "127.0.0.1" and config.port == 7860 and config.username is None
    assert config.addresses == {"txt2img": "127.0.0.1:50051", "img2img": "127.0.0.1:50052",
                                "inpaint": "127.0.0.1:50053"}
    env = {"IMAGEGEN_INPAINT_ADDR": "gpu3:9000", "GATEWAY_USERNAME": "u", "GATEWAY_PASSWORD": "p"}
    config = load_config(["--txt2img-addr", "gpu1:50051"], environ=env)
    assert config.addresses["txt2img"] == "gpu1:50051" and config.addresses["inpaint"] == "gpu3:9000"
    assert (config.username, config.password) == ("u", "p")
    with pytest.raises(SystemExit):
        load_config([], environ={"GATEWAY_USERNAME": "only-one"})


def test_a_full_queue_shows_busy_try_again(services):
    own = RunningService("txt2img", "--queue-size", "1", "--warmup", "false")
    addresses = {mode: service.address for mode, service in services.items()}
    addresses["txt2img"] = own.address
    gw = RunningGateway(addresses, retries=0)
    try:
        running = own.client.stream(request_for("txt2img", steps=150, width=128, height=128))
        next(running)
        deadline = time.monotonic() + 10
        while not own.engine.current and time.monotonic() < deadline:
            time.sleep(0.01)
        waiting = own.client.stream(request_for("txt2img", steps=5, width=128, height=128))
        next(waiting)
        with pytest.raises(AppError) as err:
            gw.client().predict("fox", "", 2, 7.5, 64, 64, 1, 1, "model default", api_name="/txt2img")
        assert "txt2img is busy" in str(err.value) and "try again" in str(err.value)
        running.cancel()
        list(waiting)
    finally:
        gw.close()
        own.stop()



def test_old_results_are_pruned_so_disk_use_stays_flat(gateway):
    import os

    gw = gateway.gateway
    client = gateway.client()
    client.predict("fox", "", 2, 7.5, 64, 64, 1, 1, "model default", api_name="/txt2img")
    old = sorted(gw.out_dir.iterdir(), key=lambda p: p.stat().st_mtime)[0]
    os.utime(old, (0, 0))  # pretend it is from long ago
    client.predict("fox", "", 2, 7.5, 64, 64, 2, 1, "model default", api_name="/txt2img")
    assert not old.exists()
    assert any(gw.out_dir.iterdir())  # the new result is kept


def test_previews_reach_the_page_at_most_once_per_preview_period(services):
    addresses = {mode: service.address for mode, service in services.items()}
    updates = {}
    for preview_ms in (0, 60_000):
        gateway = RunningGateway(addresses, preview_every=1, preview_ms=preview_ms)
        try:
            job = gateway.client().submit("a red fox", "", 12, 7.5, 64, 64, 7, 1, "model default",
                                          api_name="/txt2img")
            job.result()
            updates[preview_ms] = len(job.outputs())  # the previews, then the result
        finally:
            gateway.close()
    assert updates[0] >= 6  # a preview after each of the first 11 steps (Gradio may merge a few)
    assert updates[60_000] == 2  # the first preview, then nothing until the result


def test_inpainting_tab_takes_a1111s_inpaint_area_masked_content_and_resize_mode(gateway, tmp_path):
    client = gateway.client()
    source = png((96, 64), seed=2)
    editor = {"background": handle_file(write(tmp_path, "in.png", source)),
              "layers": [handle_file(write(tmp_path, "layer.png", brush_layer()))], "composite": None}
    painted, _seeds, infotext = client.predict(
        editor=editor, prompt="a cat", steps=4, seed=5, strength=0.7, width=64, height=64, only_masked=True,
        only_masked_padding=8, masked_content="fill", api_name="/inpaint")
    assert gallery_images(painted)[0].size == (96, 64)  # only masked: the input's own size comes back
    assert "Inpaint area: Only masked, Masked area padding: 8" in infotext and "Masked content: fill" in infotext
    _g, _s, infotext = client.predict(editor=editor, prompt="a cat", steps=4, seed=5, width=64, height=64,
                                      fit="fill", api_name="/inpaint")
    assert "Resize mode: Resize and fill" in infotext and "Inpaint area" not in infotext
    image = handle_file(write(tmp_path, "img.png", source))
    _g, _s, infotext = client.predict(image=image, prompt="a cat", steps=4, seed=5, width=64, height=64,
                                      fit="latent", api_name="/img2img")
    assert "Resize mode: Just resize (latent upscale)" in infotext
    with pytest.raises(AppError, match="not in the list of choices"):  # Gradio's own check
        client.predict(editor=editor, prompt="a cat", masked_content="blur", api_name="/inpaint")


def test_inpainting_tab_outpaints_without_a_mask_and_keeps_the_input(gateway, tmp_path):
    client = gateway.client()
    source = png((64, 64), seed=3)
    editor = {"background": handle_file(write(tmp_path, "in.png", source)), "layers": [], "composite": None}
    extended, _seeds, infotext = client.predict(editor=editor, prompt="a cat", steps=3, seed=5, outpaint_right=32,
                                                outpaint_down=8, outpaint_fill="mean", api_name="/inpaint")
    out = gallery_images(extended)[0]
    assert out.size == (96, 72)
    original = np.asarray(Image.open(io.BytesIO(source)).convert("RGB"))
    assert np.array_equal(np.asarray(out.convert("RGB"))[:64, :64], original)
    assert "Outpaint: left 0 right 32 up 0 down 8 fill mean" in infotext
    with pytest.raises(AppError, match="outpaint right must be a multiple of 8"):
        client.predict(editor=editor, prompt="a cat", outpaint_right=12, api_name="/inpaint")
