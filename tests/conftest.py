"""Shared fixtures: real services on loopback (port 0) running the embedded tiny model."""

from __future__ import annotations

import io
import os
import socket
import time

import numpy as np
import pytest
from PIL import Image

# Nothing in the tests may reach a model hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

from imagegen.v1.contract import MODE_NAMES  # noqa: E402
from services.client import ImageGenClient, make_request  # noqa: E402
from services.core.config import default_cache_dir, load_config  # noqa: E402
from services.img2img.mode import MODE as IMG2IMG  # noqa: E402
from services.inpaint.mode import MODE as INPAINT  # noqa: E402
from services.txt2img.mode import MODE as TXT2IMG  # noqa: E402

# The server-side modes, as each one's __main__ passes it in.
SERVER_MODES = {mode.name: mode for mode in (TXT2IMG, IMG2IMG, INPAINT)}

CACHE_DIR = default_cache_dir(os.environ)
SMALL = {"steps": 4, "width": 64, "height": 64}


def png(size=(64, 64), seed=0, mode="RGB") -> bytes:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    img = Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels, mode)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def box_mask(size=(64, 64), box=(16, 16, 48, 48)) -> bytes:
    img = Image.new("L", size, 0)
    img.paste(255, box)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def request_for(mode: str, **overrides):
    """A small valid request for `mode`; keyword arguments as in client.make_request."""
    kwargs = {"prompt": "a red fox", "seed": 7, **SMALL}
    contract = SERVER_MODES[mode].contract
    if contract.takes_image:
        kwargs["image"] = png()
    if contract.takes_mask:
        kwargs["mask"] = box_mask()
    kwargs.update(overrides)
    return make_request(mode, **kwargs)


class FailingPipeline:
    """The served model's own pipeline (set it as `runtime.model.pipe`), failing once with `error` in its second denoising step, through either
    engine (the pipeline's call, or the step engine's UNet calls).

    Faults that cannot be caused for real on purpose (a GPU out of memory, a bug in the service) are
    injected this way."""

    def __init__(self, pipe, error: BaseException):
        object.__setattr__(self, "pipe", pipe)
        object.__setattr__(self, "error", error)
        object.__setattr__(self, "fired", False)
        object.__setattr__(self, "steps", 0)

    def __getattr__(self, name):  # scheduler, components: the real pipeline's
        if name == "unet":
            return _FailingUNet(self)
        return getattr(self.pipe, name)

    def __setattr__(self, name, value):
        setattr(self.pipe, name, value)

    def _step(self) -> None:
        object.__setattr__(self, "steps", self.steps + 1)
        if self.steps == 2 and not self.fired:
            object.__setattr__(self, "fired", True)
            # A fresh instance: one kept here would keep its traceback, and the failed call's tensors.
            raise type(self.error)(*self.error.args)

    def __call__(self, **kwargs):
        on_step = kwargs["callback_on_step_end"]

        def failing(pipe, index, timestep, callback_kwargs):
            result = on_step(pipe, index, timestep, callback_kwargs)
            self._step()
            return result

        return self.pipe(**{**kwargs, "callback_on_step_end": failing})


class _FailingUNet:
    def __init__(self, owner: FailingPipeline):
        self.owner = owner

    def __getattr__(self, name):
        return getattr(self.owner.pipe.unet, name)

    def __call__(self, *args, **kwargs):
        self.owner._step()
        return self.owner.pipe.unet(*args, **kwargs)


def wait_for(predicate, timeout: float = 10.0) -> bool:
    """Poll until predicate() is true (True) or the timeout passes (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The engine the in-process services run, unless a test names one: the services' default, or
# IMAGEGEN_TEST_ENGINE=step|pipeline to run the suites against either.
TEST_ENGINE = os.environ.get("IMAGEGEN_TEST_ENGINE", "")


def service_config(mode: str, *extra: str):
    engine = ["--engine", TEST_ENGINE] if TEST_ENGINE else []
    return load_config(
        SERVER_MODES[mode],
        ["--model", "tiny", "--port", "0", "--health-port", "-1", "--cache-dir", str(CACHE_DIR),
         "--default-size", "64", "--grace", "5", *engine, *extra],
        environ={},
    )


class RunningService:
    """An in-process server with a real port, its runtime, and a client on a real channel."""

    def __init__(self, mode: str, *extra: str, load: bool = True):
        from services.core.rpc.server import create_server

        self.mode = mode
        self.config = service_config(mode, *extra)
        self.server, self.port, self.runtime = create_server(SERVER_MODES[mode], self.config)
        self.server.start()
        self.address = f"127.0.0.1:{self.port}"
        self.client = ImageGenClient(mode, self.address, timeout=120)
        if load:
            self.runtime.load()

    @property
    def engine(self):
        return self.runtime.engine

    def metric(self, name: str, **labels) -> float:
        """A sample from this service's Prometheus registry (0 when not yet recorded)."""
        value = self.runtime.metrics.registry.get_sample_value(name, {"mode": self.mode, **labels})
        return value or 0.0

    @property
    def steps_run(self) -> float:
        """Denoising steps this service has run, all batches together (its own metric)."""
        return self.metric("imagegen_denoising_steps_total")

    def stop(self):
        self.client.close()
        self.server.stop(0).wait()
        self.runtime.drain(0)
        self.runtime.stop()


@pytest.fixture(scope="session")
def services():
    """One loaded service per mode, shared by the session."""
    running = {mode: RunningService(mode) for mode in MODE_NAMES}
    yield running
    for service in running.values():
        service.stop()


@pytest.fixture(params=MODE_NAMES)
def service(request, services):
    return services[request.param]


class RunningGateway:
    """The Gradio gateway launched on a free port in front of the given service addresses."""

    def __init__(self, addresses: dict, timeout_s: float = 60.0, retries: int = 3, security=None, **settings):
        import tempfile

        from gateway_ui.app import build_ui, launch, make_gateway
        from gateway_ui.config import GatewayConfig

        # Saved outputs go to a folder of their own unless a test names one (never the checkout's outputs/).
        settings.setdefault("outputs_dir", tempfile.mkdtemp(prefix="imagegen-outputs-"))
        self.config = GatewayConfig(addresses=addresses, port=free_port(), timeout_s=timeout_s, retries=retries,
                                    security=security, **settings)
        self.gateway = make_gateway(self.config)  # what the tabs run on: status lines, results folder
        self.demo = build_ui(self.gateway, concurrency=self.config.concurrency)
        launch(self.demo, self.config, block=False, hub=self.gateway.hub)  # the A1111 API too, unless api=False
        self.url = f"http://127.0.0.1:{self.config.port}/"

    def client(self):
        from gradio_client import Client

        return Client(self.url, verbose=False)

    def close(self):
        self.demo.close()
        self.gateway.close()  # its channels and its results folder


@pytest.fixture(scope="session")
def gateway(services):
    running = RunningGateway({mode: service.address for mode, service in services.items()})
    yield running
    running.close()
