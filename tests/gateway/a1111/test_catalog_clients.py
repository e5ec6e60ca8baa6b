"""The catalogue routes as webuiapi and SillyTavern use them: whatever they list, txt2img takes."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest
import requests
import webuiapi

from gateway_ui.a1111 import catalog

from .conftest import SMALL



def client(gateway) -> webuiapi.WebUIApi:
    url = urlparse(gateway.url)
    return webuiapi.WebUIApi(host=url.hostname, port=url.port, steps=2)


def test_every_listed_sampler_and_scheduler_generates(gateway, api):
    webui = client(gateway)
    samplers, schedulers = webui.util_get_sampler_names(), webui.util_get_scheduler_names()
    assert "Euler a" in samplers and "DPM++ 2M" in samplers
    for name in samplers:
        answer = requests.post(f"{api}/txt2img", json={"sampler_name": name, "seed": 1, **SMALL}, timeout=120)
        assert answer.status_code == 200, (name, answer.text)
    for name in schedulers:  # SillyTavern sends a scheduler's name with its sampler
        answer = requests.post(f"{api}/txt2img", json={"sampler_name": "DPM++ 2M", "scheduler": name, **SMALL},
                               timeout=120)
        assert answer.status_code == 200, (name, answer.text)


def test_loras_are_the_services(gateway, services):
    names = {lora["name"] for lora in client(gateway).get_loras()}
    assert names == {name for service in services.values() for name in service.client.info().loras}


def test_png_info_reads_an_api_image(gateway):
    webui = client(gateway)
    image = webui.txt2img(prompt="a lantern", seed=5, width=64, height=64).image
    info = webui.png_info(image)
    assert info.info == image.info["parameters"] and info.info.startswith("a lantern\n")
