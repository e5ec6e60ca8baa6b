"""AUTOMATIC1111's hires fix read back from its infotext: a txt2img image with a second pass, as make_request's
`hires`, so replay sends the second pass again and a send fills the Hires. fix controls."""

from __future__ import annotations

from imagegen.v1 import imagegen_pb2 as pb
from services.client import make_request
from services.client.infotext import parse_parameters
from services.client.replay import ReplayError, replay_request

# As AUTOMATIC1111 1.9.3 wrote them (published with images), by factor with a model upscaler ...
A1111_BY_FACTOR = (
    "1girl, solo, space hopper, garden, <lora:fubuki:1> <lora:space_hopper:1>\n"
    "Negative prompt: bad fingers\n"
    "Steps: 20, Sampler: DPM++ 2M SDE, Schedule type: Karras, CFG scale: 7, Seed: 2245042501, Size: 512x768, "
    "Model hash: d4c1719023, Model: animekawa_v10, VAE hash: 735e4c3a44, VAE: vaeFtMse840000EmaPruned_vae.safetensors, "
    "Denoising strength: 0.6, Hires upscale: 2, Hires steps: 10, Hires upscaler: R-ESRGAN 4x+ Anime6B, "
    'Lora hashes: "fubuki: ce30cae7c555, space_hopper: f4112c058273", Version: v1.9.3'
)
# ... 1.4.0, a latent mode and a legacy sampler name ...
A1111_LATENT = (
    "best quality, a girl\nNegative prompt: lowres\n"
    "Steps: 20, Sampler: DPM++ SDE Karras, CFG scale: 7, Seed: 2051334866, Size: 512x512, Model hash: 7234b76e42, "
    "Model: chilloutmix_Ni, Denoising strength: 0.5, Hires upscale: 2, Hires steps: 20, "
    "Hires upscaler: Latent (bicubic antialiased), Version: v1.4.0"
)
# ... to a size (Civitai's copy, its keys reordered) ...
A1111_RESIZE = (
    "a forest\nSteps: 30, Size: 512x768, Seed: 1261263585, Model: Lyriel_v16, Sampler: DPM++ 2M Karras, "
    "CFG scale: 9, Clip skip: 2, Model hash: e96852ac4a, Hires steps: 38, Hires resize: 832x1280, "
    "Hires upscaler: Latent, Denoising strength: 0.56"
)
# ... and 1.10's own sampler, schedule and prompts for the second pass (written only when they differ).
A1111_OWN_PASS = (
    "a castle, sunset\nNegative prompt: blurry\n"
    "Steps: 25, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 42, Size: 512x512, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.45, Hires upscale: 1.5, "
    'Hires upscaler: Lanczos, Hires sampler: Euler a, Hires schedule type: Uniform, '
    'Hires prompt: "a castle, sunset, intricate details", Hires negative prompt: "blurry, lowres", '
    "Version: v1.10.1"
)


def test_a1111_hires_by_factor_is_txt2img_with_its_second_pass():
    p = parse_parameters(A1111_BY_FACTOR)
    assert p.mode == "txt2img" and p.strength is None  # the strength is the second pass's
    assert (p.width, p.height, p.steps) == (512, 768, 20)  # Size: the first pass's
    assert p.hires == {"scale": 2.0, "resize_width": 0, "resize_height": 0, "steps": 10,
                       "upscaler": "R-ESRGAN 4x+ Anime6B", "denoising_strength": 0.6, "scheduler": "",
                       "schedule_type": "", "prompt": "", "negative_prompt": ""}
    assert p.problems == () and "Hires upscale" not in p.extra
    assert p.fields()["hires"]["scale"] == 2.0  # PNG Info shows it


def test_a1111_latent_hires_with_a_legacy_sampler():
    p = parse_parameters(A1111_LATENT)
    assert (p.mode, p.scheduler, p.schedule_type) == ("txt2img", "dpmpp_sde", "karras")
    assert (p.hires["upscaler"], p.hires["steps"], p.hires["denoising_strength"]) == (
        "Latent (bicubic antialiased)", 20, 0.5)
    assert make_request("txt2img", **p.request_fields()).hires.upscaler == "Latent (bicubic antialiased)"


def test_a1111_hires_resize_gives_the_target_size_and_no_factor():
    p = parse_parameters(A1111_RESIZE)
    assert p.mode == "txt2img" and (p.width, p.height) == (512, 768)
    assert (p.hires["resize_width"], p.hires["resize_height"], p.hires["steps"]) == (832, 1280, 38)
    assert "scale" not in p.hires and p.hires["upscaler"] == "Latent" and p.hires["denoising_strength"] == 0.56
    one_side = parse_parameters(A1111_RESIZE.replace("832x1280", "1024x0"))
    assert (one_side.hires["resize_width"], one_side.hires["resize_height"]) == (1024, 0)


def test_a1111_second_pass_sampler_schedule_and_prompts():
    p = parse_parameters(A1111_OWN_PASS)
    assert (p.scheduler, p.schedule_type) == ("dpmpp_2m", "karras")
    assert p.hires["scale"] == 1.5 and p.hires["upscaler"] == "Lanczos" and p.hires["steps"] == 0
    assert (p.hires["scheduler"], p.hires["schedule_type"]) == ("euler_a", "uniform")
    assert (p.hires["prompt"], p.hires["negative_prompt"]) == ("a castle, sunset, intricate details", "blurry, lowres")
    # A sampler of its own without a schedule type of its own takes the first pass's (as A1111 reads it).
    same_schedule = parse_parameters(A1111_OWN_PASS.replace("Hires schedule type: Uniform, ", ""))
    assert (same_schedule.hires["scheduler"], same_schedule.hires["schedule_type"]) == ("euler_a", "karras")
    # "Use same ..." and a repeat of the first pass's are the first pass's: sent as "".
    same = parse_parameters(A1111_OWN_PASS.replace("Hires sampler: Euler a, Hires schedule type: Uniform",
                                                   "Hires sampler: DPM++ 2M, Hires schedule type: Use same scheduler"))
    assert (same.hires["scheduler"], same.hires["schedule_type"]) == ("", "")


def test_without_hires_keys_there_is_no_second_pass_and_a_strength_means_img2img():
    base = "a fox\nSteps: 4, Sampler: Euler a, CFG scale: 7.5, Seed: 7, Size: 64x64"
    assert parse_parameters(base).hires is None
    img2img = parse_parameters(base + ", Denoising strength: 0.6")
    assert img2img.mode == "img2img" and img2img.hires is None and img2img.strength == 0.6
    # Any of the hires keys alone says there was a second pass (an upscaler name alone: scale left to 2).
    alone = parse_parameters(base + ", Denoising strength: 0.7, Hires upscaler: Latent")
    assert alone.mode == "txt2img" and "scale" not in alone.hires and alone.hires["denoising_strength"] == 0.7


def test_unusable_hires_values_are_refused_by_key():
    base = "a fox\nSteps: 4, Sampler: Euler a, CFG scale: 7.5, Seed: 7, Size: 64x64, Denoising strength: 0.7, "
    p = parse_parameters(base + "Hires upscale: 9, Hires steps: lots, Hires resize: bigxbig, "
                                "Hires sampler: DPM adaptive, Hires upscaler: Latent")
    assert set(p.refused) == {"Hires upscale", "Hires steps", "Hires resize", "Hires sampler"}
    assert "is not a factor in 1..4" in p.refused["Hires upscale"]
    assert all(problem in p.problems for problem in p.refused.values())
    assert p.mode == "txt2img"
    try:
        replay_request(p, pb.ServiceInfo(mode="txt2img"))
    except ReplayError as err:
        assert "Hires upscale '9'" in str(err)
    else:
        raise AssertionError("a refused hires value must stop a replay")


def test_a_hires_checkpoint_is_said_to_differ():
    p = parse_parameters(A1111_LATENT + ", Hires checkpoint: other_model")
    assert any(problem.startswith("Hires checkpoint is not supported") for problem in p.problems)


def test_replay_sends_the_second_pass_as_recorded():
    request, warnings = replay_request(parse_parameters(A1111_OWN_PASS), pb.ServiceInfo(mode="txt2img"))
    assert warnings[0].startswith("the image was made with model")  # only the model is missing here
    hires = request.hires
    assert request.HasField("hires") and hires.scale == 1.5 and hires.upscaler == "Lanczos"
    assert (hires.scheduler, hires.schedule_type, hires.steps) == ("euler_a", "uniform", 0)
    assert hires.denoising_strength == __import__("pytest").approx(0.45)
    assert hires.prompt == "a castle, sunset, intricate details" and hires.negative_prompt == "blurry, lowres"
    assert (request.params.width, request.params.height) == (512, 512)  # the first pass's size
    plain, _ = replay_request(parse_parameters("a\nSteps: 4, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 64x64"),
                              pb.ServiceInfo(mode="txt2img"))
    assert not plain.HasField("hires")


# As Forge (A1111 1.10's fork) writes it: a hires sampler of its own and keys of its own besides.
FORGE_HIRES = (
    "1girl, queen, white binder\n"
    "Steps: 17, Sampler: Euler a, Schedule type: Karras, CFG scale: 4, Size: 776x872, Model: scgsty-base, "
    "Denoising strength: 0.41, Hires Module 1: Use same choices, Hires sampler: DPM++ 2M, Hires CFG Scale: 4, "
    'Hires upscale: 1.7, Hires steps: 7, Hires upscaler: ESRGAN_4x, Lora hashes: "MALICE-Queen-White-Binder-'
    'illuXL-v1-2: 590af5555094", Version: f2.0.1v1.10.1-previous-635-gf5330788, Module 1: sdxl_vae'
)


def test_forge_hires_infotext_reads_its_second_pass_and_keeps_its_own_keys_as_written():
    p = parse_parameters(FORGE_HIRES)
    assert p.mode == "txt2img" and (p.width, p.height) == (776, 872)
    assert (p.hires["scale"], p.hires["steps"], p.hires["upscaler"], p.hires["denoising_strength"]) == (
        1.7, 7, "ESRGAN_4x", 0.41)
    # Its own sampler with the first pass's schedule type (none of its own recorded), as A1111 reads it.
    assert (p.hires["scheduler"], p.hires["schedule_type"]) == ("dpmpp_2m", "karras")
    assert p.extra["Hires CFG Scale"] == "4" and p.extra["Hires Module 1"] == "Use same choices"
