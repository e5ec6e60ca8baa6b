"""Preprocessors over a real channel: GetInfo lists them, Preprocess gives the map, bad units are refused."""

from __future__ import annotations

import io

import cv2
import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from PIL import Image

from imagegen.v1 import imagegen_pb2 as pb
from tests.unit.core.imaging.test_preprocessors import NAMES, drawing, resized_padded, rgb


def encoded(arr: np.ndarray) -> pb.Image:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return pb.Image(data=buf.getvalue(), mime_type="image/png")


def preprocess(service, timeout=30, **fields) -> np.ndarray:
    reply = service.client.stub.Preprocess(pb.PreprocessRequest(**fields), timeout=timeout)
    return np.asarray(Image.open(io.BytesIO(reply.image.data)).convert("RGB"))


def test_get_info_lists_the_preprocessors_with_their_parameters(service):
    infos = {info.name: info for info in service.client.info().preprocessors}
    assert list(infos) == NAMES
    assert [(p.field, p.default_value, p.min, p.max) for p in infos["canny"].params] == [
        ("processor_res", 512, 64, 2048), ("threshold_a", 100, 1, 255), ("threshold_b", 200, 1, 255)]
    assert infos["invert"].label == "invert (from white bg & black line)"


def test_preprocess_returns_the_canny_map(service):
    img = drawing()
    unit = pb.ControlUnit(preprocessor="canny", image=encoded(img), processor_res=200, threshold_a=60,
                          threshold_b=140)
    padded, th, tw = resized_padded(img, 200)
    assert np.array_equal(preprocess(service, unit=unit), rgb(cv2.Canny(padded, 60, 140))[:th, :tw])


def test_preprocess_fits_the_map_to_a_size_and_seeds_shuffle(services):
    service = services["txt2img"]
    img = drawing()
    unit = pb.ControlUnit(preprocessor="shuffle", image=encoded(img), resize_mode=pb.FIT_MODE_RESIZE)
    first = preprocess(service, unit=unit, width=96, height=64, seed=3)
    assert first.shape == (64, 96, 3)
    assert np.array_equal(first, preprocess(service, unit=unit, width=96, height=64, seed=3))
    assert not np.array_equal(first, preprocess(service, unit=unit, width=96, height=64, seed=4))
    # A side left 0 is the image's own.
    assert preprocess(service, unit=unit, width=96, seed=3).shape == (100, 96, 3)


@pytest.mark.parametrize("fields,field", [
    ({"unit": pb.ControlUnit(preprocessor="openpose_full")}, "unit.preprocessor"),
    ({"unit": pb.ControlUnit(preprocessor="canny", threshold_a=300)}, "unit.threshold_a"),
    ({"unit": pb.ControlUnit(preprocessor="blur_gaussian", threshold_a=0)}, "unit.threshold_a"),
    ({"unit": pb.ControlUnit(preprocessor="canny", processor_res=9000)}, "unit.processor_res"),
    ({"unit": pb.ControlUnit(preprocessor="canny")}, "unit.image.data"),
    ({"width": 100000}, "width"),
])
def test_bad_units_are_invalid_argument_naming_the_field_and_it_keeps_serving(services, fields, field):
    service = services["img2img"]
    request = {"unit": pb.ControlUnit(preprocessor="canny"), **fields}
    if field != "unit.image.data":
        request["unit"].image.CopyFrom(encoded(drawing()))
    with pytest.raises(grpc.RpcError) as err:
        preprocess(service, **request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert err.value.details().startswith(field + ":"), err.value.details()
    bad_request = error_details_pb2.BadRequest()
    assert any(d.Unpack(bad_request) for d in rpc_status.from_call(err.value).details)
    assert bad_request.field_violations[0].field == field
    # ... and it still serves.
    ok = pb.ControlUnit(preprocessor="invert (from white bg & black line)", image=encoded(drawing()))
    assert np.array_equal(preprocess(service, unit=ok), 255 - drawing())
