"""The infotext format, written by the services and read back by the client: one module, one set of keys."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1 import infotext
import pytest

from imagegen.v1.contract import SAMPLERS, SCHEDULE_TYPES, resolve_sampler
from imagegen.v1.infotext import format_infotext, sampler_for, scheduler_for, split_infotext

ROOT = Path(__file__).resolve().parents[4]


def test_round_trip_with_negative_prompt_and_extras():
    text = format_infotext("a red fox", "blurry, dark", {"Steps": 20, "Sampler": "Euler a", "CFG scale": 7.5,
                                                       "Seed": 7, "Size": "512x512", "Model": "tiny",
                                                       "Denoising strength": 0.6})
    assert text.splitlines() == [
        "a red fox",
        "Negative prompt: blurry, dark",
        "Steps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 7, Size: 512x512, Model: tiny, Denoising strength: 0.6",
    ]
    prompt, negative, params = split_infotext(text)
    assert (prompt, negative) == ("a red fox", "blurry, dark")
    assert params["Sampler"] == "Euler a" and params["Denoising strength"] == "0.6"


def test_no_negative_line_when_empty_and_multiline_prompt():
    text = format_infotext("line one\nline two", "", {"Steps": 3, "Seed": 1, "Size": "64x64"})
    assert "Negative prompt" not in text
    assert split_infotext(text) == ("line one\nline two", "", {"Steps": "3", "Seed": "1", "Size": "64x64"})


def test_values_with_commas_or_colons_are_quoted_and_parse_back():
    text = format_infotext("p", "", {"Steps": 3, "Model": "org/model:v1, special", "Seed": 2})
    assert 'Model: "org/model:v1, special"' in text
    assert split_infotext(text)[2]["Model"] == "org/model:v1, special"


def test_every_key_round_trips():
    values = {key: f"value of {key}" for key in infotext.KEYS}
    values[infotext.SIZE] = infotext.format_size(512, 768)
    hashes = [("film", "0123456789ab"), ("pixel art", "ba98")]
    values[infotext.LORA_HASHES] = infotext.format_lora_hashes(hashes)
    values[infotext.MASK_MODE] = infotext.INPAINT_NOT_MASKED
    prompt, negative, params = split_infotext(format_infotext("a fox", "blurry", values))
    assert (prompt, negative, params) == ("a fox", "blurry", values)
    assert infotext.parse_size(params[infotext.SIZE]) == (512, 768)
    assert infotext.parse_loras(params[infotext.LORA_HASHES]) == {"film": "0123456789ab", "pixel art": "ba98"}


# Every sampler with every schedule type by the contract: what the services write reads back to the same
# (sampler, schedule) that made it (Automatic for the sampler's own default).
PAIRS = [(name, schedule) for name in SAMPLERS for schedule in SCHEDULE_TYPES]


@pytest.mark.parametrize("name, schedule", PAIRS)
def test_every_sampler_and_schedule_round_trip_through_infotext(name, schedule):
    pairs = infotext.format_sampler(name, schedule)
    text = format_infotext("p", "", {"Steps": 4, **pairs, "Seed": 1})
    _prompt, _negative, read = split_infotext(text)
    found = sampler_for(read["Sampler"], read.get(infotext.SCHEDULE_TYPE, ""))
    assert found is not None and resolve_sampler(*found) == (name, schedule)
    # A1111 1.9+'s form: the sampler's own label, the schedule apart, none for the sampler's own spacing
    assert pairs[infotext.SAMPLER] == SAMPLERS[name][0]
    assert (infotext.SCHEDULE_TYPE in pairs) == (schedule != "uniform" or SAMPLERS[name][1] != "uniform")


def test_our_samplers_map_home_and_the_old_and_new_karras_spellings_agree():
    for name, (label, _automatic) in SAMPLERS.items():
        assert sampler_for(label) == (name, "") and scheduler_for(label) == name
    assert sampler_for("DPM++ 2M Karras") == ("dpmpp_2m", "karras")  # before AUTOMATIC1111 1.9
    assert sampler_for("DPM++ 2M", "Karras") == ("dpmpp_2m", "karras")  # since 1.9
    assert sampler_for("DPM++ 2M", "Automatic") == ("dpmpp_2m", "")  # its default schedule there (Karras)
    assert resolve_sampler("dpmpp_2m") == ("dpmpp_2m", "karras")
    assert resolve_sampler("dpmpp_2m_karras") == ("dpmpp_2m", "karras")  # the legacy request name
    assert sampler_for("Euler a", "Automatic") == ("euler_a", "")
    assert sampler_for("DPM++ 2M", "Uniform") == ("dpmpp_2m", "uniform")
    assert sampler_for("Euler", "Karras") == ("euler", "karras")
    assert sampler_for("DPM2 a Karras") == ("dpm2_a", "karras") and sampler_for("LMS Karras") == ("lms", "karras")
    assert sampler_for("DPM++ 3M SDE Exponential") == ("dpmpp_3m_sde", "exponential")
    assert sampler_for("DPM++ 2M Karras", "Exponential") is None  # two schedules at once
    assert sampler_for("Euler", "Align Your Steps") is None  # a schedule type diffusers does not have
    assert sampler_for("DPM++ 2S a") is None and sampler_for("DPM adaptive") is None  # none here
    assert infotext.sampler_as_written("DPM++ 2M", "Karras") == "DPM++ 2M, Schedule type: Karras"
    assert infotext.sampler_as_written("Euler a", "") == "Euler a"


def test_what_a_service_writes_the_client_reads_back_field_by_field():
    from services.client.infotext import RECALLABLE, parse_parameters
    from services.core.config import load_config
    from services.core.imaging.images import solid_png
    from services.inpaint.mode import MODE, check

    request = pb.InpaintRequest(
        params=pb.GenerationParams(prompt="a fox", negative_prompt="blurry, dark", num_inference_steps=20,
                                   guidance_scale=6.5, width=64, height=96, seed=7, clip_skip=2),
        init_image=pb.Image(data=solid_png((64, 96))), mask_image=pb.Image(data=solid_png((64, 96), "L", 0)),
        strength=0.75, mask_blur=4, invert_mask=True, only_masked=True, only_masked_padding=12,
        masked_content=pb.MASKED_CONTENT_LATENT_NOTHING)
    spec = check(request, load_config(MODE, [], environ={}))
    spec = dataclasses.replace(spec, requested_loras=(("film", 0.8),), lora_hashes=(("film", "01234567"),))
    params = parse_parameters(spec.infotext(seed=7, sampler=infotext.format_sampler("dpmpp_2m", "karras"),
                                            model="tiny"))
    assert params.extra == {} and params.problems == ()  # every key written is one the reader knows
    assert params.request_fields() == {
        "prompt": "a fox <lora:film:0.8>", "negative_prompt": "blurry, dark", "steps": 20,
        "guidance_scale": 6.5, "width": 64, "height": 96, "seed": 7, "scheduler": "dpmpp_2m",
        "schedule_type": "karras", "strength": 0.75, "mask_blur": 4, "clip_skip": 2, "invert_mask": True, "fit": None, "only_masked": True,
        "only_masked_padding": 12, "masked_content": "latent nothing", "outpaint": None, "hires": None}
    assert list(params.request_fields()) == [field.name for field in RECALLABLE]
    assert (params.mode, params.model, params.loras) == ("inpaint", "tiny", {"film": "01234567"})


def test_a1111s_inpainting_and_resize_words_are_read_and_unknown_ones_refused():
    from services.client.infotext import parse_parameters

    line = "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, Denoising strength: 0.75"
    params = parse_parameters(f"a cat\n{line}, Inpaint area: Only masked, Masked area padding: 0, "
                              "Masked content: latent noise, Resize mode: Resize and fill")
    assert (params.mode, params.only_masked, params.only_masked_padding, params.masked_content, params.fit) == (
        "inpaint", True, 0, "latent noise", "fill")
    assert parse_parameters(f"a cat\n{line}, Masked content: fill").mode == "inpaint"
    odd = parse_parameters(f"a cat\n{line}, Mask blur: 4, Masked content: lama cleaner, Masked area padding: 999")
    assert set(odd.refused) == {"Masked content", "Masked area padding"}
    assert odd.masked_content is None and odd.only_masked_padding is None


def _string_literals(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    return {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}


def test_writer_and_reader_name_the_keys_by_the_same_constants():
    words = {*infotext.KEYS, infotext.NEGATIVE, infotext.INPAINT_NOT_MASKED}
    writers = ["services/core/spec.py", "services/img2img/mode.py", "services/inpaint/mode.py",
               "services/txt2img/mode.py"]
    readers = ["services/client/infotext.py", "services/client/replay.py", "gateway_ui/recall.py"]
    for name in writers + readers:
        spelled = _string_literals(ROOT / name) & words
        assert not spelled, f"{name} spells {spelled} (use imagegen.v1.infotext's constants)"
    from services.client.infotext import RECALLABLE

    assert {field.key for field in RECALLABLE if field.key} <= set(infotext.KEYS)


def test_the_format_module_is_pure_python():
    imports = set()
    for node in ast.walk(ast.parse((ROOT / "imagegen/v1/infotext.py").read_text())):
        if isinstance(node, ast.Import):
            imports.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imports.add("." * node.level + (node.module or ""))
    assert imports <= {"__future__", "dataclasses", "json", "re", ".contract"}, imports


# Lines that made the reader quadratic (findall retried the key pattern at every character) and other
# long shapes of a megabyte.
LONG_LINES = {
    "60,000 letters": "a" * 60_000,  # first: the old reader fails here in half a minute, not in hours
    "letters": "a" * 2**20,
    "words": "a b-c " * (2**20 // 6),
    "tabs then a word": "\t" * 2**20 + "x",
    "colons": ":" * 2**20,
    "an unclosed quote": 'Steps: "' + "a," * (2**19),
    "pairs": "Key: value, " * (2**20 // 12),
}


def test_a_long_line_is_read_in_linear_time():
    import time

    def seconds(text: str) -> float:
        start = time.perf_counter()
        split_infotext(text)
        return time.perf_counter() - start

    for name, line in LONG_LINES.items():
        # The old reader took 31 s for 60,000 letters, hours for a megabyte; this one ~0.01-0.5 s.
        assert seconds("a prompt\n" + line) < 2.0, name
    small, large = (min(seconds("a" * n) for _ in range(3)) for n in (100_000, 1_000_000))
    assert large < 30 * small + 0.05  # ten times the text: about ten times the time, not a hundred


def test_the_pairs_are_what_the_pattern_finds_everywhere():
    """The linear scan finds what findall of the one pair pattern finds (the reader's results as they were),
    on generated lines of the characters that matter to it."""
    import random

    pieces = ["Steps", "Lora hashes", ": ", ":", ", ", ",", '"', '\\"', "\\", "a b", "-", "+", "/", " ", "\t",
              "x", "é", "7"]
    rng = random.Random(20)
    for _ in range(20_000):
        line = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 14)))
        assert infotext._pairs(line) == infotext._PAIR.findall(line), line


def test_scheduler_for_takes_a1111_api_forms():
    assert sampler_for("DPM++ 2M Karras", "Karras") == ("dpmpp_2m", "karras")  # legacy name and its schedule
    assert sampler_for("DPM++ 2M", "karras") == ("dpmpp_2m", "karras")  # a schedule's name, as SillyTavern sends
    assert sampler_for("Euler", "sgm_uniform") == sampler_for("Euler", "SGMUniform") == ("euler", "sgm_uniform")
    assert sampler_for("Euler a", "automatic") == ("euler_a", "")  # webuiapi's default
