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


PLAIN = ("a fox\nSteps: 4, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 64x64, "
         "Model: {model}, Model hash: {digest}")
MODELS = [pb.ModelInfo(name="tiny", hash="aaaaaaaaaa", is_default=True),
          pb.ModelInfo(name="other", hash="bbbbbbbbbb")]


@pytest.mark.parametrize("model, digest, sent", [
    ("other", "bbbbbbbbbb", "other"),  # both agree
    ("renamed", "BBBBBBBBBB", "other"),  # the hash first: a renamed file keeps its hash
    ("other", "0000000000", "other"),  # then the name
])
def test_replay_chooses_the_model_by_hash_then_by_name(model, digest, sent):
    info = pb.ServiceInfo(mode="txt2img", model="tiny", models=MODELS)
    request, warnings = replay_request(parse_parameters(PLAIN.format(model=model, digest=digest)), info)
    assert request.params.model == sent and warnings == []


def test_replay_warns_when_the_service_has_neither_the_hash_nor_the_name():
    info = pb.ServiceInfo(mode="txt2img", model="tiny", models=MODELS)
    params = parse_parameters(PLAIN.format(model="gone", digest="0000000000"))
    request, warnings = replay_request(params, info)
    assert request.params.model == ""  # the default
    assert len(warnings) == 1 and "'gone' [0000000000]" in warnings[0] and "'tiny', 'other'" in warnings[0]
