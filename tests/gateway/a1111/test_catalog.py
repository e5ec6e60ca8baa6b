"""The A1111 API's catalogue routes, served for real (uvicorn on a free port) over the session's services and
driven as clients drive them: the webuiapi package and plain HTTP."""

from __future__ import annotations

import base64
import importlib.util
import io
import threading
import time
from contextlib import contextmanager

import pytest
import requests
import uvicorn
import webuiapi
from fastapi import FastAPI
from PIL import Image

from gateway_ui.a1111.api import build_router
from gateway_ui.a1111.catalog import SAMPLER_FACTS, offered_samplers, offered_schedules, sampler_item
from gateway_ui.app import make_backends
from gateway_ui.config import GatewayConfig
from gateway_ui.hub import Hub
from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import MODE_NAMES, SAMPLERS, SCHEDULER_LABELS, resolve_sampler
from imagegen.v1.infotext import format_sampler, sampler_for
from tests.conftest import RunningService, free_port, request_for

GET_ROUTES = ("samplers", "schedulers", "upscalers", "latent-upscale-modes", "sd-vae", "loras", "scripts",
              "script-info", "cmd-flags", "memory", "embeddings", "hypernetworks", "face-restorers",
              "prompt-styles", "realesrgan-models", "extensions")
POST_ROUTES = ("refresh-loras", "refresh-checkpoints", "refresh-vae")


def dead_address() -> str:
    return f"127.0.0.1:{free_port()}"  # nothing listens there


@contextmanager
def serve(addresses: dict):
    """The API's router (catalogue routes, error shapes and all) over a Hub of `addresses`, served by
    uvicorn: (base URL, port)."""
    backends = make_backends(GatewayConfig(addresses=addresses, timeout_s=30))
    app = FastAPI()
    app.include_router(build_router(Hub(backends)))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/sdapi/v1", port
    finally:
        server.should_exit = True
        thread.join(10)
        for backend in backends.values():
            backend.close()


@pytest.fixture(scope="module")
def api(services):
    with serve({mode: service.address for mode, service in services.items()}) as served:
        yield served


@pytest.fixture
def webui(api):
    return webuiapi.WebUIApi(baseurl=api[0])


HAS_TORCHSDE = importlib.util.find_spec("torchsde") is not None


def offered(services) -> set[str]:
    return {name for service in services.values() for name in service.client.info().schedulers}


# -- samplers and schedule types ---------------------------------------------------------------------------

def test_samplers_are_the_services_schedulers_by_a1111_name_each_once(webui, services):
    samplers = webui.get_samplers()
    names = [s["name"] for s in samplers]
    assert offered(services) == set(SCHEDULER_LABELS) - ({"dpmpp_sde"} if not HAS_TORCHSDE else set())
    sde = ["DPM++ SDE"] if HAS_TORCHSDE else []
    assert names == ["DPM++ 2M", *sde, "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 3M SDE", "Euler a", "Euler",
                     "LMS", "Heun", "DPM2", "DPM2 a", "DDIM", "PLMS", "UniPC", "LCM"]  # A1111's order
    assert "DPM++ 2M Karras" not in names  # as A1111 1.9+: the schedule is a list of its own
    by_name = {s["name"]: s for s in samplers}
    assert by_name["DPM++ 2M"] == {"name": "DPM++ 2M", "aliases": ["k_dpmpp_2m"],
                                   "options": {"scheduler": "karras"}}
    assert by_name["DPM++ 3M SDE"]["options"] == {"scheduler": "exponential", "discard_next_to_last_sigma": "True",
                                                  "brownian_noise": "True"}
    assert by_name["Euler a"]["aliases"] == ["k_euler_a", "k_euler_ancestral"]
    assert webui.util_get_sampler_names() == sorted(names)


def test_each_listed_sampler_and_schedule_round_trips_and_together_reach_every_pair(webui, services):
    samplers = [s["name"] for s in webui.get_samplers()]
    schedules = webui.get_schedulers()
    assert [(s["name"], s["label"]) for s in schedules] == [
        ("automatic", "Automatic"), ("uniform", "Uniform"), ("karras", "Karras"), ("exponential", "Exponential"),
        ("sgm_uniform", "SGM Uniform"), ("beta", "Beta")]
    karras = schedules[2]
    assert karras["default_rho"] == 7.0 and karras["need_inner_model"] is False and karras["aliases"] is None
    assert schedules[1]["need_inner_model"] is True and schedules[4]["aliases"] == ["SGMUniform"]
    takes = {s.name: set(s.schedule_types) for s in services["txt2img"].client.info().samplers}
    reached = set()
    for sampler in samplers:
        name, automatic = sampler_for(sampler, "Automatic")
        assert automatic == "" and resolve_sampler(name)[1] in takes[name], sampler  # the default always works
        for schedule in schedules[1:]:  # by label and by name, as clients send either
            ours = sampler_for(sampler, schedule["label"])
            assert ours == sampler_for(sampler, schedule["name"]) == (name, schedule["name"])
            # the service's infotext names it back as A1111 does (its A1111 API answer's sampler_name)
            pairs = format_sampler(*ours)
            assert pairs["Sampler"] == sampler
            assert sampler_for(pairs["Sampler"], pairs.get("Schedule type", "")) in (ours, (name, ""))
            if schedule["name"] in takes[name]:
                reached.add(ours)
    assert reached == {(name, schedule) for name, schedules in takes.items() for schedule in schedules}
    assert sampler_for("DPM++ 2M", "Karras") == sampler_for("DPM++ 2M Karras") == ("dpmpp_2m", "karras")


def test_a_sampler_s_automatic_schedule_option_is_what_the_mapping_does():
    for name in SAMPLER_FACTS:
        options = sampler_item(name).options
        ours, automatic = SAMPLERS[sampler_for(name)[0]]
        assert ours == name and options.get("scheduler", "uniform") == automatic, name


def test_schedules_listed_are_only_those_an_offered_sampler_takes():
    only_karras = {"dpmpp_2m_karras"}
    assert offered_samplers(only_karras) == ["DPM++ 2M"]
    euler_a = pb.ServiceInfo(schedulers=["euler_a"], samplers=[
        pb.SamplerInfo(name="euler_a", label="Euler a", schedule_types=["uniform", "sgm_uniform"])])
    assert [s.name for s in offered_schedules([euler_a])] == ["automatic", "uniform", "sgm_uniform"]
    assert offered_samplers(set()) == [] and offered_schedules([pb.ServiceInfo()]) == []


# -- the fixed lists ---------------------------------------------------------------------------------------

def test_fixed_lists_as_a1111_gives_them(webui):
    assert webui.get_upscalers() == [{"name": name, "model_name": None, "model_path": None, "model_url": None,
                                      "scale": 4.0} for name in ("None", "Lanczos", "Nearest")]
    assert [m["name"] for m in webui.get_latent_upscale_modes()] == [
        "Latent", "Latent (antialiased)", "Latent (bicubic)", "Latent (bicubic antialiased)",
        "Latent (nearest)", "Latent (nearest-exact)"]
    assert webui.get_sd_vae() == []
    assert webui.get_scripts() == {"txt2img": ["x/y/z plot", "controlnet"],
                                   "img2img": ["x/y/z plot", "poor man's outpainting", "controlnet"]}
    assert webui.get_embeddings() == {"loaded": {}, "skipped": {}}
    for empty in (webui.get_hypernetworks, webui.get_face_restorers, webui.get_prompt_styles,
                  webui.get_realesrgan_models):
        assert empty() == []
    for path in ("script-info", "extensions"):
        assert requests.get(f"{webui.baseurl}/{path}", timeout=10).json() == []


def test_memory_is_the_host_s_ram_and_no_cuda(webui):
    memory = webui.get_memory()
    ram = memory["ram"]
    assert ram["total"] > 0 and 0 <= ram["free"] <= ram["total"] and ram["used"] == ram["total"] - ram["free"]
    assert memory["cuda"] == {"error": "unavailable"}  # the gateway holds no GPU


def test_cmd_flags_say_what_this_gateway_does_and_reveal_no_path_or_credential(webui, api):
    flags = webui.get_cmd_flags()
    assert flags["api"] is True and flags["nowebui"] is False
    assert flags["port"] == api[1]
    assert flags["listen"] is False  # reached on loopback
    assert not {"api_auth", "gradio_auth", "ckpt_dir", "lora_dir", "data_dir"} & flags.keys()


def test_every_post_answers_json_as_a1111(webui):
    assert webui.refresh_checkpoints() is None  # A1111's null
    for path in POST_ROUTES:
        response = requests.post(f"{webui.baseurl}/{path}", timeout=10)
        assert response.status_code == 200 and response.headers["content-type"] == "application/json"
        assert response.json() is None


def test_the_openapi_page_lists_every_route(api):
    paths = requests.get(api[0].removesuffix("/sdapi/v1") + "/openapi.json", timeout=10).json()["paths"]
    for path in (*GET_ROUTES, *POST_ROUTES, "png-info"):
        assert f"/sdapi/v1/{path}" in paths, path


# -- LoRAs, and services that cannot be reached ------------------------------------------------------------

def test_loras_are_the_services_union_by_name_never_a_path_and_refresh_sees_new_files(tmp_path, services):
    (tmp_path / "fox_style.safetensors").write_bytes(b"")
    (tmp_path / "Anime.safetensors").write_bytes(b"")
    with_loras = RunningService("txt2img", "--lora-dir", str(tmp_path), load=False)
    try:
        addresses = {"txt2img": with_loras.address, "img2img": services["img2img"].address,
                     "inpaint": dead_address()}
        with serve(addresses) as (url, _):
            webui = webuiapi.WebUIApi(baseurl=url)
            loras = webui.get_loras()
            assert loras == [{"name": name, "alias": name, "path": name, "metadata": {}}
                             for name in ("Anime", "fox_style")]
            assert str(tmp_path) not in requests.get(f"{url}/loras", timeout=10).text
            (tmp_path / "new_one.safetensors").write_bytes(b"")
            assert requests.post(f"{url}/refresh-loras", timeout=10).json() is None
            assert "new_one" in [lora["name"] for lora in webui.get_loras()]
            # The inpaint service is down: the lists come from the others.
            assert "Euler a" in webui.util_get_sampler_names()
    finally:
        with_loras.stop()


def test_embeddings_are_the_services_in_a1111_s_shape_loaded_and_skipped(tmp_path, services):
    from tests.embedding_files import write_pt, write_safetensors, write_sdxl

    write_pt(tmp_path, "foxemb", count=3)
    write_safetensors(tmp_path, "Glow")
    write_sdxl(tmp_path, "xlemb", count=2)  # does not fit the tiny SD model: skipped, as A1111 lists it
    with_them = RunningService("txt2img", "--embeddings-dir", str(tmp_path), "--warmup", "false")
    try:
        addresses = {"txt2img": with_them.address, "img2img": services["img2img"].address,
                     "inpaint": dead_address()}
        with serve(addresses) as (url, _):
            assert webuiapi.WebUIApi(baseurl=url).get_embeddings() == {
                "loaded": {
                    "foxemb": {"step": 1500, "sd_checkpoint": "0123456789", "sd_checkpoint_name": "tiny",
                               "shape": 32, "vectors": 3},
                    "Glow": {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None, "shape": 32,
                             "vectors": 1},
                },
                "skipped": {"xlemb": {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None,
                                      "shape": 80, "vectors": 2}},
            }
            assert str(tmp_path) not in requests.get(f"{url}/embeddings", timeout=10).text
    finally:
        with_them.stop()


def test_with_no_service_reachable_every_route_answers_and_lists_are_empty():
    with serve({mode: dead_address() for mode in MODE_NAMES}) as (url, _):
        started = time.monotonic()
        for path in GET_ROUTES:
            response = requests.get(f"{url}/{path}", timeout=30)
            assert response.status_code == 200, (path, response.text)
        for path in ("samplers", "schedulers", "loras"):
            assert requests.get(f"{url}/{path}", timeout=30).json() == [], path
        assert time.monotonic() - started < 20


# -- PNG Info ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def generated_png(services) -> bytes:
    request = request_for("txt2img", prompt="a red fox, (autumn:1.2)", negative_prompt="blurry", seed=1234,
                          scheduler="dpmpp_2m_karras")
    return services["txt2img"].client.generate(request).images[0].data


def test_a_service_s_png_round_trips_through_png_info(webui, generated_png):
    result = webui.png_info(Image.open(io.BytesIO(generated_png)))  # webuiapi sends it as a data: URL
    assert result.info.startswith("a red fox, (autumn:1.2)\nNegative prompt: blurry\nSteps: 4, ")
    params = result.parameters
    assert params["Prompt"] == "a red fox, (autumn:1.2)" and params["Negative prompt"] == "blurry"
    assert (params["Steps"], params["Seed"], params["Size-1"], params["Size-2"]) == ("4", "1234", "64", "64")
    assert sampler_for(params["Sampler"], params["Schedule type"]) == ("dpmpp_2m", "karras")
    # What A1111 adds for absent keys, where absent means the same here.
    assert (params["Clip skip"], params["Hires resize-1"], params["Mask mode"]) == ("1", 0, "Inpaint masked")
    assert "Size" not in params
    raw = requests.post(f"{webui.baseurl}/png-info", json={"image": base64.b64encode(generated_png).decode()},
                        timeout=30)
    assert raw.status_code == 200 and raw.json() == {"info": result.info, "items": {},
                                                     "parameters": result.parameters}


def test_png_info_of_an_image_without_parameters_is_empty_info(webui):
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buf, format="JPEG")
    image = base64.b64encode(buf.getvalue()).decode()
    response = requests.post(f"{webui.baseurl}/png-info", json={"image": image}, timeout=30)
    assert response.status_code == 200
    body = response.json()
    assert body["info"] == "" and body["items"] == {}
    assert body["parameters"]["Prompt"] == "" and "Steps" not in body["parameters"]  # as A1111 parses ""


@pytest.mark.parametrize("body", [{"image": base64.b64encode(b"not an image at all").decode()},
                                  {"image": "data:image/png;base64,AAAA"},
                                  {"image": "%%%"}, {}, {"image": None}])
def test_png_info_refuses_what_is_not_an_image_naming_the_field_and_keeps_serving(webui, body):
    response = requests.post(f"{webui.baseurl}/png-info", json=body, timeout=30)
    assert response.status_code == 422
    assert "image" in str(response.json()["detail"])
    assert requests.get(f"{webui.baseurl}/samplers", timeout=30).status_code == 200
