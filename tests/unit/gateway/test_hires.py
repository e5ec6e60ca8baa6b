"""The Txt2Img tab's Hires. fix: its controls last in /txt2img's API, its values as make_request's `hires`,
and parameters read back (A1111's hires infotext) filling them."""

from __future__ import annotations

import gradio as gr
import pytest

from gateway_ui.app import endpoint
from gateway_ui.hires import HIRES_INPUTS, upscaler_choices
from gateway_ui.masks import InputError
from gateway_ui.recall import targets, updates, values_for
from gateway_ui.tabs import TABS, build_tab
from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import RESIZERS, LATENT_UPSCALE_MODES, SAMPLERS, placeholder_info
from services.client.infotext import parse_parameters

A1111_HIRES = (
    "a castle, sunset\nNegative prompt: blurry\n"
    "Steps: 25, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 42, Size: 512x512, "
    "Denoising strength: 0.45, Hires upscale: 1.5, Hires steps: 12, Hires upscaler: Latent (nearest), "
    'Hires sampler: Euler a, Hires prompt: "a castle, sunset, intricate details", Version: v1.10.1'
)


def served_info() -> pb.ServiceInfo:
    info = placeholder_info("txt2img")
    for name in ("dpmpp_2m", "euler_a"):
        info.samplers.add(name=name, label=SAMPLERS[name][0])
    return info


@pytest.fixture(scope="module")
def tabs():
    image_modes = [spec.contract for spec in TABS if spec.contract.takes_image]
    with gr.Blocks():
        with gr.Tabs() as row:
            built = {spec.contract.name: build_tab(spec, served_info(), image_modes)[0] for spec in TABS}
    return built, row


def values(tab, **chosen) -> dict:
    out = {name: component.value for name, component in tab.inputs.items()}
    out.update({"prompt": "a fox", **chosen})
    return out


def test_the_hires_controls_are_txt2img_s_and_last_in_its_api_signature(tabs):
    built, _row = tabs
    names = list(built["txt2img"].inputs)
    page = list(built["txt2img"].controls.appended)  # the page's schedule type and batch count came last (#23)
    assert names[-len(page):] == page
    names = names[:-len(page)]
    units = list(built["txt2img"].controlnet.fields)  # ControlNet's group came after them (#24)
    assert names[-len(units):] == units
    # A group of their own, after everything before them.
    assert tuple(names[-len(units) - len(HIRES_INPUTS):-len(units)]) == HIRES_INPUTS
    signature = list(endpoint(None, built["txt2img"]).__signature__.parameters)
    assert signature[:-2] == names + page and signature[-2:] == ["progress", "request"]
    for mode in ("img2img", "inpaint"):
        assert not set(HIRES_INPUTS) & set(built[mode].inputs)


def test_the_upscaler_choices_are_the_contract_s_then_the_service_s():
    assert upscaler_choices(placeholder_info("txt2img")) == [*LATENT_UPSCALE_MODES, *RESIZERS]
    info = placeholder_info("txt2img")
    info.upscalers.add(name="esrgan", scale=2, architecture="ESRGAN")
    info.upscalers.add(name="evil", unusable="not a plain weights file")
    assert upscaler_choices(info) == [*LATENT_UPSCALE_MODES, *RESIZERS, "esrgan"]  # the usable models last


def test_the_checkbox_off_sends_no_second_pass(tabs):
    built, _row = tabs
    tab = built["txt2img"]
    assert not tab.spec.request(values(tab)).HasField("hires")
    assert not tab.spec.request(values(tab, hires=None)).HasField("hires")  # an API caller from before


def test_the_controls_become_the_request_s_hires(tabs):
    built, _row = tabs
    tab = built["txt2img"]
    request = tab.spec.request(values(tab, hires=True))
    hires = request.hires
    assert request.HasField("hires") and (hires.upscaler, hires.scale, hires.steps) == ("Latent", 2, 0)
    assert hires.denoising_strength == pytest.approx(0.7) and (hires.scheduler, hires.schedule_type) == ("", "")
    chosen = tab.spec.request(values(tab, hires=True, hires_upscaler="Lanczos", hires_steps=8, hires_strength=0.3,
                                     hires_resize_width=1024, hires_resize_height=768, hires_scheduler="euler_a",
                                     hires_schedule_type="karras", hires_prompt="sharp")).hires
    assert (chosen.upscaler, chosen.steps, chosen.resize_width, chosen.resize_height) == ("Lanczos", 8, 1024, 768)
    assert (chosen.scheduler, chosen.schedule_type, chosen.prompt) == ("euler_a", "karras", "sharp")
    # Same sampler, its own schedule: the first pass's sampler named, as the contract takes a schedule type.
    own = tab.spec.request(values(tab, hires=True, hires_schedule_type="exponential")).hires
    assert (own.scheduler, own.schedule_type) == ("dpmpp_2m", "exponential")


def test_bad_hires_values_name_the_field(tabs):
    built, _row = tabs
    tab = built["txt2img"]
    with pytest.raises(InputError, match="hires_steps"):
        tab.spec.request(values(tab, hires=True, hires_steps="many"))
    with pytest.raises(InputError, match="hires sampler"):
        tab.spec.request(values(tab, hires=True, scheduler="model default", hires_schedule_type="karras"))


def test_a1111_hires_infotext_fills_the_controls_and_a_plain_one_clears_the_checkbox(tabs):
    built, row = tabs
    tab = built["txt2img"]
    filled, warnings = values_for(tab, parse_parameters(A1111_HIRES))
    assert warnings == []
    assert {name: filled[name] for name in HIRES_INPUTS} == {
        "hires": True, "hires_upscaler": "Latent (nearest)", "hires_steps": 12, "hires_strength": 0.45,
        "hires_scale": 1.5, "hires_resize_width": 0, "hires_resize_height": 0, "hires_scheduler": "euler_a",
        "hires_schedule_type": "karras", "hires_prompt": "a castle, sunset, intricate details",
        "hires_negative_prompt": ""}
    assert filled["width"] == 512 and "strength" not in filled  # Size: the first pass's
    # Sent through the tab again, the controls make the request the infotext records.
    request = tab.spec.request(values(tab, **filled))
    assert (request.hires.scale, request.hires.steps, request.hires.scheduler) == (1.5, 12, "euler_a")
    plain = parse_parameters("a\nSteps: 4, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 64x64")
    assert values_for(tab, plain)[0]["hires"] is False
    sent = updates(tab, plain)
    assert sent[targets(tab, row).index(tab.inputs["hires"])]["value"] is False


def test_an_upscaler_the_service_lacks_is_kept_with_a_warning(tabs):
    built, _row = tabs
    filled, warnings = values_for(built["txt2img"], parse_parameters(
        A1111_HIRES.replace("Latent (nearest)", "R-ESRGAN 4x+ Anime6B")))
    assert "hires_upscaler" not in filled and filled["hires"] is True
    assert warnings == ["hires upscaler 'R-ESRGAN 4x+ Anime6B' is not one the service has: the upscaler chosen "
                        "is kept and the result will differ"]


def test_a_page_load_sets_the_choices_and_limits_get_info_gives(tabs):
    from gateway_ui.hires import ranged, updates

    built, _row = tabs
    info = served_info()
    info.limits.max_steps, info.limits.max_width = 40, 1024
    components = ranged(built["txt2img"].inputs)
    by_name = dict(zip((c.elem_id for c in components), updates(info, built["txt2img"].inputs)))
    assert by_name["txt2img-hires-steps"]["maximum"] == 40
    assert by_name["txt2img-hires-resize-width"]["maximum"] == 1024
    assert by_name["txt2img-hires-sampler"]["choices"] == [("Use same sampler", "Use same sampler"),
                                                          ("DPM++ 2M", "dpmpp_2m"), ("Euler a", "euler_a")]
    assert ranged(built["img2img"].inputs) == [] and updates(info, built["img2img"].inputs) == []
