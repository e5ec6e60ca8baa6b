"""PNG Info and replay of ControlNet units: the settings come back, the control image (never in the PNG) is
warned about, and a ControlNet the service lacks is refused."""

from __future__ import annotations

import pytest

from imagegen.v1 import imagegen_pb2 as pb
from services.client.infotext import parse_parameters
from services.client.replay import ReplayError, replay_request

UNIT = ('ControlNet 0: "Module: canny, Model: edges [abcdef0123], Weight: 0.6, Resize Mode: Inner Fit (Scale to Fit), '
        'Processor Res: 256, Threshold A: 50, Threshold B: 150, Guidance Start: 0.2, Guidance End: 0.8, '
        'Pixel Perfect: False, Control Mode: ControlNet is more important"')
TXT2IMG = f"a fox\nSteps: 4, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 64x64, {UNIT}"
IMG2IMG = f"a fox\nSteps: 4, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 64x64, Denoising strength: 0.5, {UNIT}"
INFO = pb.ServiceInfo(mode="txt2img", controlnets=[pb.ControlNetInfo(name="renamed", family="sd1", hash="ABCDEF0123")])


def test_png_info_shows_the_units_and_not_as_other():
    params = parse_parameters(TXT2IMG)
    fields = params.fields()
    unit = fields["controlnet"]["unit 0"]
    assert (unit["module"], unit["model"], unit["weight"], unit["resize_mode"]) == (
        "canny", "edges", 0.6, "Crop and Resize")  # the old alias read as its label
    assert "ControlNet 0" not in fields.get("other", {})


def test_txt2img_replay_without_the_control_image_leaves_the_unit_out_and_warns():
    request, warnings = replay_request(parse_parameters(TXT2IMG), INFO)
    assert not request.params.control
    assert any("control image is not in the PNG" in w for w in warnings)


def test_replay_with_the_control_image_restores_the_unit_by_hash():
    request, _ = replay_request(parse_parameters(TXT2IMG), INFO, control_images=[b"\x89PNG..."])
    (unit,) = request.params.control
    assert unit.model == "renamed"  # found by its hash, as checkpoints are
    assert (unit.preprocessor, unit.processor_res, unit.threshold_a, unit.threshold_b) == ("canny", 256, 50, 150)
    assert unit.weight == pytest.approx(0.6) and unit.guidance_end == pytest.approx(0.8)
    assert unit.control_mode == pb.CONTROL_MODE_CONTROLNET and unit.resize_mode == pb.FIT_MODE_CROP
    assert unit.image.data == b"\x89PNG..."


def test_img2img_replay_uses_the_input_image_and_warns():
    info = pb.ServiceInfo(mode="img2img", controlnets=INFO.controlnets)
    request, warnings = replay_request(parse_parameters(IMG2IMG), info, image=b"png")
    (unit,) = request.params.control
    assert not unit.HasField("image")  # the contract's default: the request's init image
    assert any("input image is used" in w for w in warnings)


def test_a_controlnet_the_service_lacks_is_refused():
    with pytest.raises(ReplayError, match="ControlNet 'edges'.*it has none"):
        replay_request(parse_parameters(TXT2IMG), pb.ServiceInfo(mode="txt2img"), control_images=[b"x"])


def test_an_unreadable_unit_is_refused_naming_it():
    params = parse_parameters(TXT2IMG.replace("Weight: 0.6", "Weight: lots"))
    assert "ControlNet 0" in params.refused
    with pytest.raises(ReplayError, match="ControlNet 0 cannot be read: Weight 'lots' is not a number"):
        replay_request(params, INFO)
