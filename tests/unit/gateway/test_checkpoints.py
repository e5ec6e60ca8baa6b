"""The checkpoint dropdown's choices and the status line's words, from GetInfo messages."""

from __future__ import annotations

from gateway_ui.checkpoints import choices, default_name, describe, refreshed
from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import placeholder_info


def info(*models: pb.ModelInfo, **fields) -> pb.ServiceInfo:
    return pb.ServiceInfo(mode="txt2img", models=models, **fields)


def test_choices_are_the_usable_models_labelled_by_hash_once_known():
    listed = info(pb.ModelInfo(name="base", family="sd1", is_default=True, hash="0123456789"),
                  pb.ModelInfo(name="xl", family="sdxl"),  # its hash not computed yet
                  pb.ModelInfo(name="painter", family="sd1", inpaint=True, unusable="needs a mask"))
    assert choices(listed) == [("base [0123456789]", "base"), ("xl", "xl")]
    assert default_name(listed) == "base"
    assert describe(listed, "xl") == "xl (SDXL model)"
    assert refreshed(listed, "painter")["value"] == "base"  # not offered: back to the default


def test_a_single_model_is_described_by_getinfo_s_fields_until_its_entry_knows_its_family():
    single = info(pb.ModelInfo(name="tiny", is_default=True), model_family="sd1", inpaint_model=True)
    assert choices(single) == [("tiny", "tiny")]  # one model: the dropdown still shows it
    assert describe(single, None) == "tiny (SD 1.x inpainting model)"


def test_a_service_listing_no_models_shows_its_family_only_and_an_unreachable_one_nothing():
    older = info(model="/srv/models/secret.safetensors", model_family="sdxl")
    assert describe(older, None) == "SDXL model"  # never the configured path
    assert choices(older) == [] and default_name(older) is None
    assert describe(placeholder_info("txt2img"), None) == ""
