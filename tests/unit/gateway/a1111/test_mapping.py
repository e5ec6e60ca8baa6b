"""gateway_ui/a1111/mapping.py: A1111's fields -> make_request's, and the services' fields back."""

from __future__ import annotations

import base64

import pytest

from gateway_ui.a1111.errors import ApiError
from gateway_ui.a1111.mapping import a1111_field, decode_image, plan
from gateway_ui.a1111.models import Img2ImgRequest, Txt2ImgRequest


def test_service_fields_come_back_in_a1111s_names():
    assert a1111_field("params.width") == "width"
    assert a1111_field("params.num_inference_steps") == "steps"
    assert a1111_field("params.loras[0].name") == "prompt"
    assert a1111_field("init_image.data") == "init_images.0"
    assert a1111_field("mask_image") == "mask"
    assert a1111_field("strength") == "denoising_strength"
    assert a1111_field("something.new") == "something.new"


def test_images_with_or_without_a_data_prefix():
    raw = b"\x89PNG\r\n\x1a\n..."
    text = base64.b64encode(raw).decode()
    assert decode_image(text, "mask") == raw
    assert decode_image("data:image/png;base64," + text, "mask") == raw
    assert decode_image(text.rstrip("="), "mask") == raw  # padding left off
    for bad in ("@@@", "data:image/png;base64,", "https://example.com/x.png"):
        with pytest.raises(ApiError) as err:
            decode_image(bad, "init_images.0")
        assert err.value.status == 422 and err.value.detail[0]["loc"] == ["body", "init_images", 0]


def test_batches_get_consecutive_seeds_and_the_mask_picks_inpaint():
    work = plan(Txt2ImgRequest(seed=10, batch_size=3, n_iter=2), {})
    assert work.mode == "txt2img" and [r.params.seed for r in work.requests] == [10, 13]
    assert work.requests[0].params.num_images == 3 and work.requests[0].params.scheduler == "euler"
    image = base64.b64encode(b"img").decode()
    assert plan(Img2ImgRequest(init_images=[image]), {}).mode == "img2img"
    inpaint = plan(Img2ImgRequest(init_images=[image], mask=image, mask_blur_x=6, mask_blur_y=6,
                                  inpainting_mask_invert=1), {})
    assert inpaint.mode == "inpaint" and inpaint.requests[0].mask_blur == 6 and inpaint.requests[0].invert_mask


def test_options_and_override_settings():
    work = plan(Txt2ImgRequest(override_settings={"CLIP_stop_at_last_layers": 3}), {"CLIP_stop_at_last_layers": 2})
    assert work.requests[0].params.clip_skip == 3  # the request's override wins over the caller's option
    assert plan(Txt2ImgRequest(), {"CLIP_stop_at_last_layers": 2.0}).clip_skip == 2
    assert plan(Txt2ImgRequest(), {"samples_format": "jpg"}).output_format == "jpeg"
