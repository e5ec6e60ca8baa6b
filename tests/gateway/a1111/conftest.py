"""The A1111 API on the session's gateway (tests/conftest.py's RunningGateway serves it at /sdapi/v1)."""

from __future__ import annotations

import base64
import io
import json
import threading

import numpy as np
import pytest
import requests
from PIL import Image

SMALL = {"steps": 4, "width": 64, "height": 64}
# Long enough on the tiny model for /progress, /interrupt and /skip to meet it running.
SLOW = {"steps": 150, "width": 256, "height": 256}


@pytest.fixture
def api(gateway) -> str:
    return gateway.url + "sdapi/v1"


def title_of(service, name: str = "tiny") -> str:
    """A model's /sd-models title ("name [short hash]") once its service has hashed it."""
    from tests.conftest import wait_for

    def hashed():
        return next((m.hash for m in service.client.info().models if m.name == name and m.hash), "")

    assert wait_for(hashed, 60), f"{name} was not hashed"
    return f"{name} [{hashed()}]"


def b64(data: bytes, prefix: bool = False) -> str:
    text = base64.b64encode(data).decode()
    return "data:image/png;base64," + text if prefix else text


def decoded(text: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(text)))


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def info_of(answer: dict) -> dict:
    assert isinstance(answer["info"], str)  # A1111 sends info as JSON text
    return json.loads(answer["info"])


class Call(threading.Thread):
    """A POST running in the background (a generation to watch, stop or race)."""

    def __init__(self, url: str, body: dict, **kwargs):
        super().__init__(daemon=True)
        self.url, self.body, self.kwargs = url, body, kwargs
        self.response: requests.Response | None = None
        self.start()

    def run(self):
        self.response = requests.post(self.url, json=self.body, timeout=300, **self.kwargs)

    def result(self) -> requests.Response:
        self.join(300)
        assert self.response is not None, "the call did not answer"
        return self.response
