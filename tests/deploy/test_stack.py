"""The CPU image built and the compose stack run for real, as `make stack` runs it.

The image is built from deploy/Dockerfile on a Debian base made here; the stack (three modes on the
tiny model and the gateway) comes up under docker-compose 1.29 or Compose v2, with every container
as the Kubernetes manifests run it, and is checked through its published ports: the project's
client per mode, gradio_client through the gateway, a mode killed and restarted, then `down`.
The Docker engine is the one running, or (as root) a private dockerd started and stopped here.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
import yaml
from PIL import Image

from deploy.stack import engine as engines
from deploy.stack import image, tools
from deploy.stack.compose import SERVICES, Stack
from imagegen.v1.contract import MODE_NAMES
from services.client import ImageGenClient
from tests.conftest import free_port, png, request_for

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s" / "base"
# A cold build (Debian base, PyPI downloads) takes minutes; the first test pays for it.
pytestmark = pytest.mark.timeout(2400)


@pytest.fixture(scope="module")
def stack():
    tools.ensure()
    engine = engines.find_or_start()
    # Free ports, so a `make run` or `make stack` on this machine does not collide with the test.
    publish = {name: f"127.0.0.1:{free_port()}" for name in
               ("GATEWAY_PUBLISH", "TXT2IMG_PUBLISH", "IMG2IMG_PUBLISH", "INPAINT_PUBLISH")}
    running = Stack(engine, project="imagegen-test", publish=publish)
    try:
        image.build(engine, image.TORCH_SPEC)
        running.down()  # what an interrupted run left
        running.up()
        yield running
    finally:
        if engines.answers(engine.env):
            running.down()
        engine.stop()


def address(stack: Stack, mode: str) -> str:
    return stack.publish[f"{mode.upper()}_PUBLISH"]


def manifest(component: str) -> dict:
    documents = yaml.safe_load_all((K8S / f"{component}.yaml").read_text())
    return next(d for d in documents if d["kind"] == "Deployment")["spec"]["template"]["spec"]


def test_every_container_runs_as_its_kubernetes_manifest_says(stack):
    for service in SERVICES:
        pod = manifest(service)
        container = pod["containers"][0]
        inspected = stack.inspect(service)
        config, host = inspected["Config"], inspected["HostConfig"]
        assert inspected["State"]["Health"]["Status"] == "healthy", service
        assert config["User"] == f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}"
        assert host["ReadonlyRootfs"] is container["securityContext"]["readOnlyRootFilesystem"] is True
        assert host["CapDrop"] == container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert "no-new-privileges:true" in host["SecurityOpt"]
        # Writable: exactly the manifest's writable mounts (emptyDir /tmp as tmpfs, the model cache as a
        # volume); read-only: exactly its read-only ones (the checkpoints).
        mounts = container["volumeMounts"]
        writable = set(host.get("Tmpfs") or {}) | {m["Destination"] for m in inspected["Mounts"] if m["RW"]}
        assert writable == {m["mountPath"] for m in mounts if not m.get("readOnly")}, service
        read_only = {m["Destination"] for m in inspected["Mounts"] if not m["RW"]}
        assert read_only == {m["mountPath"] for m in mounts if m.get("readOnly")}, service


def test_health_comes_from_the_images_own_healthcheck(stack):
    from_image = json.loads(stack.engine.docker("image", "inspect", image.CPU_IMAGE).stdout)[0]["Config"]["Healthcheck"]
    assert from_image["Test"] == ["CMD", "python", "-m", "services.healthcheck"]
    for mode in MODE_NAMES:
        assert stack.inspect(mode)["Config"]["Healthcheck"]["Test"] == from_image["Test"]
        log = stack.inspect(mode)["State"]["Health"]["Log"]
        assert log and log[-1]["ExitCode"] == 0 and "SERVING" in log[-1]["Output"]


def test_root_filesystem_is_read_only_and_tmp_is_writable(stack):
    probe = ("import os, pathlib; pathlib.Path('/tmp/probe').write_text('x'); print(os.getuid());\n"
             "try:\n open('/app/probe', 'w')\nexcept OSError as err:\n print(err.strerror)")
    done = stack.engine.docker("exec", stack.container("txt2img"), "python", "-c", probe)
    assert done.stdout.split("\n")[:2] == ["10001", "Read-only file system"], done.stdout


def test_the_image_is_lean(stack):
    # No project tests, no pip, no compiler, no package test suites, no build inputs, no caches.
    script = ("import importlib.util, pathlib, shutil, sysconfig; site = pathlib.Path(sysconfig.get_paths()['purelib']);"
              "print(sorted(str(p) for p in [*site.glob('*/tests'), *site.glob('*/*/tests'), pathlib.Path('/app/tests'),"
              " pathlib.Path('/tmp/local'), pathlib.Path('/root/.cache'), site / 'torch' / 'include'] if p.exists()),"
              " importlib.util.find_spec('pip'), shutil.which('gcc'), shutil.which('cc'))")
    done = stack.engine.docker("exec", "--user", "0", stack.container("txt2img"), "python", "-c", script)
    assert done.stdout.strip() == "[] None None None"
    assert image.size_bytes(stack.engine) < 1.8e9


@pytest.mark.parametrize("mode", MODE_NAMES)
def test_each_mode_generates_through_its_published_port(stack, mode):
    with ImageGenClient(mode, address(stack, mode)) as client:
        assert client.health() == "SERVING"
        response = client.generate(request_for(mode, seed=11), timeout=120)
    assert len(response.images) == 1 and response.images[0].seed == 11
    assert Image.open(io.BytesIO(response.images[0].data)).size == (64, 64)


def gateway_client(stack: Stack):
    from gradio_client import Client

    return Client(f"http://{stack.publish['GATEWAY_PUBLISH']}/", verbose=False)


def image_file(tmp_path: Path) -> object:
    from gradio_client import handle_file

    path = tmp_path / "in.png"
    path.write_bytes(png())
    return handle_file(str(path))


def test_the_gateway_generates_through_gradio_client(stack):
    gallery, seeds, infotext = gateway_client(stack).predict(
        "a red fox", "", 2, 7.5, 64, 64, 7, 1, "model default", api_name="/txt2img")
    assert seeds == "7" and "Seed: 7" in infotext
    assert Image.open(gallery[0]["image"]).size == (64, 64)


def test_a_killed_mode_is_unavailable_the_others_serve_and_it_recovers(stack, tmp_path):
    gateway = gateway_client(stack)
    stack.engine.docker("kill", stack.container("txt2img"))
    assert stack.health("txt2img") == "exited"
    with pytest.raises(Exception) as err:
        gateway.predict("fox", "", 2, 7.5, 64, 64, 1, 1, "model default", api_name="/txt2img")
    assert "txt2img" in str(err.value) and "unavailable" in str(err.value)
    # The other tabs keep working, and the gateway stays healthy.
    assert gateway.predict(image_file(tmp_path), "x", "", 0.6, 4, 7.5, 0, 0, 2, 1, "model default",
                           api_name="/img2img")[1] == "2"
    assert stack.health("gateway") == "healthy"

    stack.compose("start", "txt2img")
    stack.wait_healthy(["txt2img"], timeout=180)

    deadline = time.monotonic() + 30  # the gateway reconnects within its backoff (5 s)
    while True:
        try:
            assert gateway.predict("fox", "", 2, 7.5, 64, 64, 5, 1, "model default", api_name="/txt2img")[1] == "5"
            break
        except Exception:  # noqa: BLE001 - not reconnected yet
            assert time.monotonic() < deadline, "the txt2img tab did not recover after the restart"
            time.sleep(1)


def test_down_leaves_nothing_and_the_private_engine_stops(stack):
    stack.down()
    assert stack.leftovers() == {}
    assert image.size_bytes(stack.engine) > 0  # the image stays: the next run's build is cached
    if stack.engine.started_here:
        stack.engine.stop()
        assert not engines.answers(stack.engine.env)
        assert engines.private_processes() == [] and engines.private_mounts() == []
