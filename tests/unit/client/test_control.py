"""ControlNet units from plain values: short names or sd-webui-controlnet's labels, None left unset."""

from __future__ import annotations

import pytest

from imagegen.v1 import imagegen_pb2 as pb
from services.client import control_unit, make_request


def test_units_go_into_the_request_from_messages_or_keywords():
    request = make_request("txt2img", "x", control=[
        control_unit("edges", b"png", preprocessor="canny", threshold_a=50, control_mode="prompt"),
        {"model": "depth", "weight": 0.5, "resize_mode": "Resize and Fill",
         "control_mode": "ControlNet is more important"}])
    first, second = request.params.control
    assert (first.model, first.image.data, first.preprocessor, first.threshold_a) == ("edges", b"png", "canny", 50)
    assert first.control_mode == pb.CONTROL_MODE_PROMPT and not first.HasField("weight")
    assert not first.HasField("processor_res") and first.resize_mode == pb.FIT_MODE_UNSPECIFIED
    assert (second.weight, second.resize_mode, second.control_mode) == (0.5, pb.FIT_MODE_FILL,
                                                                        pb.CONTROL_MODE_CONTROLNET)


@pytest.mark.parametrize("keywords, says", [
    ({"control_mode": "loud"}, "unknown control mode 'loud'; choose one of balanced, prompt, controlnet"),
    ({"resize_mode": "latent"}, "unknown resize mode 'latent'"),
])
def test_unknown_labels_are_refused(keywords, says):
    with pytest.raises(ValueError, match=says):
        control_unit("edges", **keywords)
