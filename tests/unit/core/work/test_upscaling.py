"""Upscale requests: every field checked and named, A1111's Extras sizes, and the lane (bounded, cancel)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from imagegen.v1 import imagegen_pb2 as pb
from services.core.errors import Cancelled, InvalidArgument, QueueFull
from services.core.models.upscalers import Upscalers
from services.core.work import upscaling
from tests.conftest import png, service_config
from tests.upscaler_files import upscaler_folder


@pytest.fixture(scope="module")
def found(tmp_path_factory):
    return Upscalers(upscaler_folder(tmp_path_factory.mktemp("upscalers")))


CONFIG = service_config("img2img")


def check(found, size=(100, 75), **fields):
    fields.setdefault("upscaler", "Lanczos")
    return upscaling.check_upscale(pb.UpscaleRequest(image=pb.Image(data=png(size)), **fields), CONFIG, found)


@pytest.mark.parametrize("fields, field, words", [
    (dict(upscaler=""), "upscaler", "is required"),
    (dict(upscaler="nope"), "upscaler", "unknown upscaler 'nope'"),
    (dict(upscaler="../esrgan"), "upscaler", "names, not paths"),
    (dict(upscaler="evil"), "upscaler", "cannot be used"),
    (dict(upscaler="not-a-model"), "upscaler", "spandrel"),
    (dict(scale=0.5), "scale", "outside 1..8"),
    (dict(scale=9), "scale", "outside 1..8"),
    (dict(scale=float("nan")), "scale", "outside"),
    (dict(scale=2, width=200, height=200), "scale", "not both"),
    (dict(width=200), "height", "is required with width"),
    (dict(height=200), "width", "is required with height"),
    (dict(width=4096, height=64), "width", "over the limit"),
    (dict(scale=8), "scale", "over the limit"),  # 800x600 fits; see the size below
    (dict(upscaler_2="nope", upscaler_2_visibility=0.5), "upscaler_2", "unknown upscaler"),
    (dict(upscaler_2="Nearest", upscaler_2_visibility=1.5), "upscaler_2_visibility", "outside 0..1"),
    (dict(output_format=9), "output_format", "unknown format"),
    (dict(quality=101), "quality", "outside 1..100"),
])
def test_a_bad_field_is_named(found, fields, field, words):
    size = (300, 300) if fields.get("scale") == 8 else (100, 75)
    with pytest.raises(InvalidArgument) as caught:
        check(found, size, **fields)
    assert caught.value.field == field and words in caught.value.problem


def test_a_long_folder_is_named_briefly(tmp_path):
    for i in range(40):
        (tmp_path / f"model-{i:02d}.pth").write_bytes(b"")
    with pytest.raises(InvalidArgument) as caught:
        check(Upscalers(tmp_path), upscaler="model-1")
    assert caught.value.problem.endswith("43 upscalers; GetInfo lists them") and "closest: 'model-" in caught.value.problem


def test_the_image_is_checked_as_a_generation_s_input_image(found):
    with pytest.raises(InvalidArgument) as caught:
        upscaling.check_upscale(pb.UpscaleRequest(image=pb.Image(data=b"not an image"), upscaler="Lanczos"),
                                CONFIG, found)
    assert caught.value.field == "image"


def test_sizes_as_a1111_s_extras(found):
    by = check(found, scale=2.5)  # each side rounded down to a multiple of 8
    assert by.size == by.reach == (248, 184)
    assert by.info == "Postprocess upscale by: 2.5, Postprocess upscaler: Lanczos"
    assert check(found).size == (200, 144)  # scale unset: 2
    to = check(found, width=300, height=120, upscaler="esrgan")
    assert to.size == to.reach == (300, 120)
    assert to.info == "Postprocess upscale to: 300x120, Postprocess upscaler: esrgan"
    crop = check(found, width=300, height=120, crop=True)
    assert crop.size == (300, 120) and crop.reach == (300, 225)  # covers 300x120 at the image's 4:3
    assert "Postprocess crop to: 300x120" in crop.info
    two = check(found, upscaler_2="Nearest", upscaler_2_visibility=0.25)
    assert two.info.endswith("Postprocess upscaler: Lanczos, Postprocess upscaler 2: Nearest")
    assert check(found, upscaler_2="Nearest").upscaler_2 == ""  # visibility 0: not run


def test_crop_takes_the_centre_and_upscaler_2_blends(found):
    spec = check(found, (100, 75), width=300, height=120, crop=True)
    out = upscaling.run_upscale(spec, found)
    cover = spec.image.resize((300, 225), Image.LANCZOS)
    assert np.array_equal(np.asarray(out), np.asarray(cover.crop((0, 52, 300, 172))))
    spec = check(found, upscaler_2="Nearest", upscaler_2_visibility=0.25)
    out = upscaling.run_upscale(spec, found)
    lanczos, nearest = (spec.image.resize((200, 144), f) for f in (Image.LANCZOS, Image.NEAREST))
    expected = Image.blend(lanczos, nearest, 0.25)
    assert np.array_equal(np.asarray(out), np.asarray(expected))


def test_the_lane_runs_one_at_a_time_bounds_the_waiting_and_cancels_while_queued():
    lane = upscaling.UpscaleLane(max_waiting=1)
    inside, release = threading.Event(), threading.Event()
    first = lane.call(None)
    results = {}

    def work(call):
        inside.set()
        release.wait(30)
        return "first"

    runner = threading.Thread(target=lambda: results.setdefault("first", lane.run(first, work)))
    runner.start()
    assert inside.wait(30)
    second = lane.call(None)

    def wait_second():
        try:
            lane.run(second, lambda call: "second")
        except Cancelled as exc:
            results["second"] = exc

    waiter = threading.Thread(target=wait_second)
    waiter.start()
    while lane.depth == 0:  # the second is queued behind the first
        threading.Event().wait(0.01)
    with pytest.raises(QueueFull):
        lane.run(lane.call(None), lambda call: "third")  # one waiting already: full
    second.cancel()
    waiter.join(30)
    assert isinstance(results["second"], Cancelled) and "while queued" in str(results["second"])
    release.set()
    runner.join(30)
    assert results["first"] == "first" and lane.depth == 0
    assert lane.run(lane.call(None), lambda call: "again") == "again"


def test_a_cancelled_run_stops_before_its_next_tile(found):
    spec = check(found, (400, 100), upscaler="esrgan", scale=1)
    call = upscaling.UpscaleLane(1).call(None)
    tiles_run = []

    def between():
        tiles_run.append(1)
        if len(tiles_run) == 2:
            call.cancel()
        call.check()

    with pytest.raises(Cancelled, match="during the upscale"):
        upscaling.run_upscale(spec, found, between)
    assert len(tiles_run) == 2  # of 3 tiles: the one after the cancel never ran
