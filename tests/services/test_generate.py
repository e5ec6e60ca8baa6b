"""Each mode over a real channel: sizes, seeds, batches of images, streams, formats, infotext."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.infotext import split_infotext
from services.client import Progress, Result
from services.client.infotext import parse_parameters, read_infotext
from services.core.checks import denoising_steps
from tests.conftest import box_mask, png, request_for


def decode(image: pb.GeneratedImage) -> Image.Image:
    return Image.open(io.BytesIO(image.data))


def test_returns_the_size_asked_for(service):
    reply = service.client.generate(request_for(service.mode, width=96, height=64))
    assert len(reply.images) == 1
    image = reply.images[0]
    assert (image.width, image.height) == (96, 64)
    assert decode(image).size == (96, 64)
    assert image.mime_type == "image/png"
    assert reply.timings.inference_ms > 0 and reply.timings.total_ms >= reply.timings.inference_ms


def test_same_seed_same_bytes_and_different_seeds_differ(service):
    first = service.client.generate(request_for(service.mode, seed=11)).images[0]
    again = service.client.generate(request_for(service.mode, seed=11)).images[0]
    other = service.client.generate(request_for(service.mode, seed=12)).images[0]
    assert first.seed == again.seed == 11
    assert first.data == again.data
    assert decode(first).tobytes() != decode(other).tobytes()


def test_num_images_gives_that_many_with_distinct_seeds(service):
    reply = service.client.generate(request_for(service.mode, seed=100, num_images=3))
    assert [image.seed for image in reply.images] == [100, 101, 102]
    pixels = {decode(image).tobytes() for image in reply.images}
    assert len(pixels) == 3


def test_image_i_of_a_request_equals_a_single_request_with_its_seed(service):
    batch = service.client.generate(request_for(service.mode, seed=40, num_images=2))
    alone = service.client.generate(request_for(service.mode, seed=41))
    a, b = decode(batch.images[1]), decode(alone.images[0])
    diff = max(abs(x - y) for x, y in zip(a.tobytes(), b.tobytes()))
    assert diff <= 2  # float reductions may differ by batch size on CPU


def test_unset_seed_is_random_and_returned(service):
    request = request_for(service.mode)
    request.params.ClearField("seed")
    seeds = {service.client.generate(request).images[0].seed for _ in range(2)}
    assert len(seeds) == 2


def test_stream_has_one_progress_event_per_step_then_the_result(service):
    events = list(service.client.stream(request_for(service.mode, steps=5)))
    kinds = [type(event).__name__ for event in events]
    assert kinds[0] == "Queued"
    assert kinds[-1] == "Result" and kinds.count("Result") == 1
    progress = [event for event in events if isinstance(event, Progress)]
    total = progress[0].total_steps
    # The steps asked for (an image mode: those its default strength runs), though PNDM, the tiny model's
    # scheduler, calls the UNet once more.
    assert total == denoising_steps(5, service.runtime.mode.contract.default_strength or 1.0)
    assert [p.step for p in progress] == list(range(1, total + 1))
    assert all(p.total_steps == total for p in progress)
    assert service.engine is not None
    result = events[-1].response
    assert len(result.images) == 1 and result.images[0].seed == 7


def test_img2img_strength_scales_the_steps_run(services):
    events = list(services["img2img"].client.stream(request_for("img2img", steps=10, strength=0.5)))
    progress = [event for event in events if isinstance(event, Progress)]
    assert [p.step for p in progress] == [1, 2, 3, 4, 5] and progress[-1].total_steps == 5


def test_infotext_parses_back_and_is_embedded(service):
    request = request_for(service.mode, prompt="a red fox, at dawn", negative_prompt="blurry", seed=7, steps=3)
    image = service.client.generate(request).images[0]
    parsed = parse_parameters(image.infotext)
    assert parsed.prompt == "a red fox, at dawn"
    assert parsed.negative_prompt == "blurry"
    assert (parsed.seed, parsed.steps, parsed.width, parsed.height) == (7, 3, 64, 64)
    assert parsed.model == "tiny"
    assert parsed.mode == service.mode  # what the infotext tells is what made it
    assert read_infotext(image.data) == image.infotext
    if service.mode != "txt2img":
        assert parsed.strength is not None


@pytest.mark.parametrize("fmt,mime", [("jpeg", "image/jpeg"), ("webp", "image/webp")])
def test_lossy_formats_carry_infotext_in_exif(services, fmt, mime):
    image = services["txt2img"].client.generate(request_for("txt2img", output_format=fmt)).images[0]
    assert image.mime_type == mime
    assert decode(image).format == fmt.upper()
    assert read_infotext(image.data) == image.infotext


@pytest.mark.parametrize("name", ["ddim", "pndm", "lms", "euler", "euler_a", "heun", "dpmpp_2m",
                                  "dpmpp_2m_karras", "unipc"])
def test_every_scheduler_runs_and_is_reproducible(services, name):
    client = services["txt2img"].client
    first = client.generate(request_for("txt2img", scheduler=name, steps=3)).images[0]
    again = client.generate(request_for("txt2img", scheduler=name, steps=3)).images[0]
    assert first.data == again.data
    assert "Sampler: " in first.infotext


def test_get_info_describes_the_service(service):
    info = service.client.info()
    assert info.mode == service.mode
    assert info.model == "tiny"
    assert info.device == "cpu" and info.dtype == "float32"
    assert {"ddim", "euler", "euler_a", "dpmpp_2m", "pndm", "lms"} <= set(info.schedulers)
    assert info.defaults.scheduler == "pndm"
    assert info.limits.max_width == 2048 and info.limits.max_steps == 150 and info.limits.max_images == 8
    assert info.defaults.width == 64  # --default-size in the fixture


def test_img2img_fit_modes(services):
    client = services["img2img"].client
    odd = png(size=(100, 70))
    keep = client.generate(request_for("img2img", image=odd, width=0, height=0)).images[0]
    assert (keep.width, keep.height) == (96, 64)
    crop = client.generate(request_for("img2img", image=odd, width=64, height=64, fit="crop")).images[0]
    assert (crop.width, crop.height) == (64, 64)


@pytest.mark.parametrize("mode", ["img2img", "inpaint"])
@pytest.mark.parametrize("strength, steps", [(1 / 3, 3), (1 / 7, 7), (1 / 30, 30), (0.04, 25)])
def test_a_strength_sent_as_float32_runs_the_step_it_asks_for(services, mode, strength, steps):
    events = list(services[mode].client.stream(request_for(mode, steps=steps, strength=strength)))
    progress = [event for event in events if isinstance(event, Progress)]
    assert isinstance(events[-1], Result) and [(p.step, p.total_steps) for p in progress] == [(1, 1)]
    recorded = split_infotext(events[-1].images[0].infotext)[2]["Denoising strength"]
    again = list(services[mode].client.stream(request_for(mode, steps=steps, strength=float(recorded))))
    assert again[-1].images[0].data == events[-1].images[0].data  # the recorded value replays exactly


@pytest.mark.parametrize("mode", ["img2img", "inpaint"])
def test_one_side_given_the_other_follows_the_input(services, mode):
    request = request_for(mode, width=128, height=0, image=png((96, 64)), **(
        {"mask": box_mask((96, 64), (0, 0, 48, 64))} if mode == "inpaint" else {}))
    image = services[mode].client.generate(request).images[0]
    assert (image.width, image.height) == (128, 88)  # 128 x 64/96 = 85.3, rounded to a multiple of 8
