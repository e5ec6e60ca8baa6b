"""Checkpoints through the A1111 API: /sd-models titles with hashes, sd_model_checkpoint chooses per caller
(and override_settings per call), the image is the service's own for that model."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import requests

from services.client import make_request
from services.core.models.presets import ensure_tiny
from tests.conftest import CACHE_DIR, RunningGateway, RunningService, wait_for
from tests.services.test_model_pool import pixels, reseeded

from .conftest import SMALL


@pytest.fixture(scope="module")
def folder_gateway(services, tmp_path_factory):
    """txt2img serving alpha (its default) and beta from a models folder; the other modes as the session's."""
    root = tmp_path_factory.mktemp("checkpoints")
    base = ensure_tiny(CACHE_DIR, False)
    reseeded(base, root / "alpha", 1)
    reseeded(base, root / "beta", 2)
    service = RunningService("txt2img", "--warmup", "false", "--models-dir", str(root), "--model", "alpha")
    gw = RunningGateway({**{m: s.address for m, s in services.items()}, "txt2img": service.address})
    yield gw, service
    gw.close()
    service.stop()


def api_pixels(answer) -> np.ndarray:
    return pixels(SimpleNamespace(data=base64.b64decode(answer["images"][0])))


def hashes(service) -> dict:
    assert wait_for(lambda: all(m.hash for m in service.client.info().models), 60)
    return {m.name: m.hash for m in service.client.info().models}


def test_sd_models_lists_every_checkpoint_with_its_hash_and_a_call_chooses_one(folder_gateway):
    gw, service = folder_gateway
    api = gw.url + "sdapi/v1"
    digest = hashes(service)
    titles = {m["model_name"]: m["title"] for m in requests.get(f"{api}/sd-models", timeout=30).json()}
    assert titles["alpha"] == f"alpha [{digest['alpha']}]" and titles["beta"] == f"beta [{digest['beta']}]"
    answer = requests.post(f"{api}/txt2img", json={"seed": 3, "override_settings": {
        "sd_model_checkpoint": titles["beta"]}, **SMALL}, timeout=120).json()
    assert "info" in answer, answer
    info = json.loads(answer["info"])
    assert info["sd_model_name"] == "beta" and info["sd_model_hash"] == digest["beta"]
    direct = service.client.generate(make_request("txt2img", seed=3, model="beta", scheduler="euler",
                                                  guidance_scale=7.0, **SMALL))
    assert np.array_equal(api_pixels(answer), pixels(direct.images[0]))
    plain = requests.post(f"{api}/txt2img", json={"seed": 3, **SMALL}, timeout=120).json()
    assert json.loads(plain["info"])["sd_model_name"] == "alpha"  # the default, for a caller that chose none


def test_the_callers_option_chooses_its_checkpoint_where_the_mode_has_it(folder_gateway):
    gw, _service = folder_gateway
    ada, bob = ("ada", "x"), ("bob", "y")
    gw_auth = RunningGateway(gw.config.addresses, api_auth=(ada, bob))
    api = gw_auth.url + "sdapi/v1"
    try:
        assert requests.post(f"{api}/options", json={"sd_model_checkpoint": "beta"}, auth=ada, timeout=30).ok
        options = requests.get(f"{api}/options", auth=ada, timeout=30).json()
        assert options["sd_model_checkpoint"].startswith("beta [")  # shown as its /sd-models title
        mine = requests.post(f"{api}/txt2img", json={"seed": 1, **SMALL}, auth=ada, timeout=120).json()
        theirs = requests.post(f"{api}/txt2img", json={"seed": 1, **SMALL}, auth=bob, timeout=120).json()
        assert json.loads(mine["info"])["sd_model_name"] == "beta"
        assert json.loads(theirs["info"])["sd_model_name"] == "alpha"  # another caller's choice is its own
        # img2img's service has no beta: the choice made for txt2img leaves it on its default.
        image = base64.b64encode(base64.b64decode(mine["images"][0])).decode()
        other = requests.post(f"{api}/img2img", json={"init_images": [image], **SMALL}, auth=ada, timeout=120)
        assert other.status_code == 200
        refused = requests.post(f"{api}/img2img", json={"init_images": [image], "override_settings": {
            "sd_model_checkpoint": "beta"}, **SMALL}, auth=ada, timeout=120)
        assert refused.status_code == 422
        assert refused.json()["detail"][0]["loc"] == ["body", "override_settings", "sd_model_checkpoint"]
    finally:
        gw_auth.close()


def test_refresh_checkpoints_finds_a_checkpoint_added_while_running(folder_gateway):
    gw, service = folder_gateway
    api = gw.url + "sdapi/v1"
    root = Path(service.config.models_dir)
    names = lambda: [m["model_name"] for m in requests.get(f"{api}/sd-models", timeout=30).json()]  # noqa: E731
    assert "gamma" not in names()
    reseeded(ensure_tiny(CACHE_DIR, False), root / "gamma", 3)
    refused = requests.post(f"{api}/txt2img", json={"override_settings": {"sd_model_checkpoint": "gamma"}, **SMALL},
                            timeout=60)
    assert refused.status_code == 422  # not listed until a rescan
    assert requests.post(f"{api}/refresh-checkpoints", timeout=60).json() is None  # A1111's null
    assert "gamma" in names()
    made = requests.post(f"{api}/txt2img", json={"seed": 2, "override_settings": {"sd_model_checkpoint": "gamma"},
                                                 **SMALL}, timeout=120).json()
    assert json.loads(made["info"])["sd_model_name"] == "gamma"
