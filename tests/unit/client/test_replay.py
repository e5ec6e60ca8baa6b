"""Replay's refusals stay short: a LoRA the service lacks names the service's LoRAs only when they are few."""

from __future__ import annotations

import pytest

from imagegen.v1 import imagegen_pb2 as pb
from services.client.infotext import parse_parameters
from services.client.replay import ReplayError, replay_request

INFOTEXT = "a fox <lora:flim:0.5>\nSteps: 4, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 64x64, Model: tiny"


@pytest.mark.parametrize("loras, says", [
    (["film", "grain"], "(it has film, grain)"),
    ([f"style-{i}" for i in range(300)], "(it has 300; GetInfo lists them)"),
    ([], "(it has none)"),
])
def test_a_missing_lora_is_a_short_error(loras, says):
    with pytest.raises(ReplayError) as info:
        replay_request(parse_parameters(INFOTEXT), pb.ServiceInfo(mode="txt2img", loras=loras))
    assert str(info.value).endswith(f"does not have: flim {says}")
