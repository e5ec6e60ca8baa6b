"""The tabs' checkpoint dropdown on a real service with a folder of tiny checkpoints: it lists the usable
models (the default chosen), the chosen one makes the image and is named in the infotext and the status
line, and an image's recorded hash selects its model again ("Send to")."""

from __future__ import annotations

import shutil

import gradio as gr
import numpy as np
import pytest
from gradio_client.exceptions import AppError
from PIL import Image

from gateway_ui import checkpoints, recall
from gateway_ui.tabs import TABS, build_tab
from imagegen.v1.contract import placeholder_info
from services.client import make_request
from services.client.infotext import parse_parameters
from services.core.models.presets import ensure_tiny
from tests.conftest import CACHE_DIR, RunningGateway, RunningService, wait_for
from tests.gateway.test_page_controls import PAGE_INPUTS
from tests.services.test_model_pool import pixels, reseeded

SETTINGS = {"prompt": "a fox", "negative_prompt": "", "steps": 3, "guidance": 7.5, "width": 64, "height": 64,
            "seed": 5, "scheduler": "euler"}


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """txt2img serving alpha (the default) and beta, two differently seeded tiny checkpoints, and an
    inpainting model it cannot use; every hash computed (they label the choices)."""
    root = tmp_path_factory.mktemp("models")
    base = ensure_tiny(CACHE_DIR, False)
    reseeded(base, root / "alpha", 1)
    reseeded(base, root / "beta", 2)
    shutil.copytree(ensure_tiny(CACHE_DIR, True), root / "painter")
    running = RunningService("txt2img", "--warmup", "false", "--models-dir", str(root), "--model", "alpha")
    assert wait_for(lambda: all(m.hash for m in running.client.info().models), timeout=60)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def gateway(service):
    # The other modes' services are not needed here: their tabs show them unreachable.
    running = RunningGateway({"txt2img": service.address, "img2img": "127.0.0.1:1", "inpaint": "127.0.0.1:1"},
                             timeout_s=60)
    yield running
    running.close()


def hashes(service) -> dict:
    return {m.name: m.hash for m in service.client.info().models}


def direct(service, model: str) -> np.ndarray:
    """The service's own image for SETTINGS and `model`, called without the gateway."""
    request = make_request("txt2img", SETTINGS["prompt"], steps=SETTINGS["steps"], guidance_scale=7.5,
                           width=64, height=64, seed=SETTINGS["seed"], model=model, scheduler="euler")
    return pixels(service.client.generate(request).images[0])


def component(gateway, elem_id: str):
    return next(c for c in gateway.demo.blocks.values() if getattr(c, "elem_id", None) == elem_id)


def test_the_dropdown_lists_the_usable_models_by_name_and_hash_the_default_chosen_last_in_the_api(service,
                                                                                                  gateway):
    known = hashes(service)
    dropdown = component(gateway, "txt2img-model")
    assert dropdown.choices == [(f"alpha [{known['alpha']}]", "alpha"), (f"beta [{known['beta']}]", "beta")]
    assert dropdown.value == "alpha"  # painter is left out: an inpainting UNet txt2img cannot use
    api = gateway.client().view_api(print_info=False, return_format="dict")
    # The hires fix's, ControlNet's and the page's inputs are groups of their own after these (#25, #24, #23).
    params = [p for p in api["named_endpoints"]["/txt2img"]["parameters"]
              if not p["parameter_name"].startswith(("controlnet_", "hires"))
              and p["parameter_name"] not in PAGE_INPUTS["txt2img"]]
    # Last: positional callers of before keep working.
    assert [p["parameter_name"] for p in params][-3:] == ["clip_skip", "model", "styles"]
    assert params[-2]["parameter_has_default"] and params[-2]["parameter_default"] == "alpha"


def test_choosing_the_second_model_gives_its_image_and_its_infotext_names_it(service, gateway):
    client = gateway.client()
    gallery, _seeds, infotext = client.predict(**SETTINGS, model="beta", api_name="/txt2img")
    made = np.asarray(Image.open(gallery[0]["image"]).convert("RGB"))
    assert np.array_equal(made, direct(service, "beta"))
    assert not np.array_equal(made, direct(service, "alpha"))  # the models differ: the choice is what counts
    assert f"Model: beta, Model hash: {hashes(service)['beta']}" in infotext
    # A caller of before (no model: its positional arguments end at the scheduler) gets the default.
    _g, _s, infotext = client.predict("a fox", "", 2, 7.5, 64, 64, 1, 1, "model default", api_name="/txt2img")
    assert "Model: alpha" in infotext


def test_an_unknown_model_is_refused_naming_the_field_and_the_tab_keeps_working(gateway):
    client = gateway.client()
    with pytest.raises(AppError, match="params.model") as err:
        client.predict(**SETTINGS, model="../alpha", api_name="/txt2img")
    assert "alpha, beta" in str(err.value)  # what the service has
    assert client.predict(**SETTINGS, model="alpha", api_name="/txt2img")[1] == "5"


def test_the_status_line_names_the_chosen_model_and_its_family(gateway):
    line = gateway.gateway.status_line
    assert line("txt2img", "beta") == "**txt2img** service: **serving** · beta (SD 1.x model)"
    assert line("txt2img") == "**txt2img** service: **serving** · alpha (SD 1.x model)"  # the default
    assert line("txt2img", "gone").endswith("· gone: not offered by the service (🔄 refreshes the list)")
    assert line("img2img", "beta") == "**img2img** service: **unreachable**"


def event(gateway, name: str, reads: str | None = None):
    """The function behind one of the page's own (private) events, by its name (and the elem_id of a
    component it reads)."""
    return next(f.fn for f in gateway.demo.fns.values() if getattr(f.fn, "__name__", "") == name and (
        reads is None or any(getattr(c, "elem_id", None) == reads for c in f.inputs)))


def test_refreshing_keeps_a_choice_still_offered_and_falls_back_to_the_default(service, gateway):
    refresh = event(gateway, "refresh", reads="txt2img-model")
    update, status, *_cards = refresh("beta")  # then the Networks cards (gateway_ui/networks.py)
    assert update["value"] == "beta" and [value for _label, value in update["choices"]] == ["alpha", "beta"]
    assert status.endswith("· beta (SD 1.x model)")
    update, status, *_cards = refresh("gone")
    assert update["value"] == "alpha" and status.endswith("· alpha (SD 1.x model)")
    loaded = event(gateway, "refresh_all")()  # a page load: the default chosen, hashes in the labels
    assert loaded[0].endswith("· alpha (SD 1.x model)")
    chosen = [u for u in loaded if isinstance(u, dict) and u.get("value") == "alpha"]
    assert len(chosen) == 1 and chosen[0]["choices"] == component(gateway, "txt2img-model").choices


@pytest.fixture(scope="module")
def tab():
    with gr.Blocks():
        with gr.Tabs():
            return build_tab(TABS[0], placeholder_info("txt2img"), [])[0]


def test_a_send_selects_the_recorded_model_by_hash_then_name_else_the_default_with_a_warning(service, gateway,
                                                                                              tab):
    info = service.client.info()
    _g, _s, infotext = gateway.client().predict(**SETTINGS, model="beta", api_name="/txt2img")
    renamed = parse_parameters(infotext.replace("Model: beta", "Model: beta-renamed"))
    update, warnings = checkpoints.recalled(renamed, info)
    assert update["value"] == "beta" and warnings == []  # by its hash, as A1111 finds a renamed file
    by_name = parse_parameters(infotext.replace(hashes(service)["beta"], "0123456789"))
    assert checkpoints.recalled(by_name, info)[0]["value"] == "beta"
    unknown = parse_parameters(infotext.replace("Model: beta", "Model: other").replace(
        hashes(service)["beta"], "0123456789"))
    update, warnings = checkpoints.recalled(unknown, info)
    assert update["value"] == "alpha"
    assert len(warnings) == 1 and "'other' [0123456789]" in warnings[0] and "default is used" in warnings[0]
    # Where the send puts it: the checkpoint dropdown, after the fields the infotext fills.
    with pytest.warns(UserWarning, match="other"):  # gr.Warning outside a page event
        out = recall.updates(tab, unknown, None, info)
    assert out[recall.targets(tab, None).index(tab.model)]["value"] == "alpha"
