"""imagegen/v1/contract.py: the hand-written table agrees with the generated contract and the services."""

import pytest

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import (
    FIT_BY_ENUM,
    FORMAT_BY_ENUM,
    LIMITS,
    MODE_NAMES,
    MODES,
    OUTPUT_FORMATS,
    mode,
    placeholder_info,
)
from services.core.config import Defaults, Limits


def test_each_mode_names_its_proto_service_request_and_stub():
    assert MODE_NAMES == ("txt2img", "img2img", "inpaint")
    for contract in MODES.values():
        service = pb.DESCRIPTOR.services_by_name[contract.service]
        assert service.full_name == contract.full_service_name
        assert service.methods_by_name["Generate"].input_type.full_name == contract.request.DESCRIPTOR.full_name
        assert contract.stub.__name__ == f"{contract.service}Stub"
        fields = contract.request.DESCRIPTOR.fields_by_name
        assert ("init_image" in fields) == contract.takes_image and ("mask_image" in fields) == contract.takes_mask
    ports = [port for c in MODES.values() for port in (c.port, c.metrics_port, c.health_port)]
    assert len(set(ports)) == len(ports)


def test_unknown_mode_is_a_clear_error():
    try:
        mode("upscale")
    except ValueError as err:
        assert "upscale" in str(err) and "txt2img" in str(err)
    else:
        raise AssertionError("no error")


def test_every_enum_value_has_its_entry():
    assert set(FORMAT_BY_ENUM) == set(pb.ImageFormat.values())
    assert set(FIT_BY_ENUM) == set(pb.FitMode.values())
    assert {f.mime for f in OUTPUT_FORMATS.values()} == {"image/png", "image/jpeg", "image/webp"}


def test_service_defaults_are_the_contract_s():
    limits = Limits()
    for name in ("max_width", "max_pixels", "max_steps", "max_images", "max_queue", "max_batch_images"):
        assert getattr(limits, name) == getattr(LIMITS, name)
    assert Defaults().guidance_scale == 7.5 and Defaults().quality == 90


def test_placeholder_info_carries_the_documented_defaults():
    assert placeholder_info("img2img").defaults.strength == pytest.approx(0.8)  # a float32 field
    inpaint = placeholder_info("inpaint")
    assert inpaint.defaults.strength == 1.0 and inpaint.defaults.mask_blur == 4
    assert placeholder_info("txt2img").limits.max_steps == LIMITS.max_steps
    assert not placeholder_info("txt2img").schedulers  # unknown until the service answers
