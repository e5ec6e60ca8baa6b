"""Kubernetes manifests: rendered by kustomize offline, validated strictly, and their promises checked."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from imagegen.v1.contract import MODE_NAMES, MODES
from tests.deploy.service_flags import compile_settings, pool_settings

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ["gpu", "cpu-tiny"]
K8S_VERSION = "1.32.0"


def render(overlay: str) -> list[dict]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with its built-in kustomize) is needed: `make test` installs it"
    out = subprocess.run([kubectl, "kustomize", str(ROOT / "deploy/k8s/overlays" / overlay)],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request):
    docs = render(request.param)
    return request.param, docs


def find(docs, kind, name):
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def container(deployment):
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env(c) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def port_of(mode: str) -> int:
    return MODES[mode].port


def test_every_document_validates_strictly(rendered):
    _overlay, docs = rendered
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_strict_validation_would_catch_a_typo(rendered):
    _overlay, docs = rendered
    broken = yaml.safe_load(yaml.safe_dump(find(docs, "Deployment", "txt2img")))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"grpc": {"port": 50051}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


@pytest.mark.parametrize("mode", MODE_NAMES)
def test_each_mode_is_its_own_deployment_with_probes_on_its_health_service(rendered, mode):
    overlay, docs = rendered
    deployment = find(docs, "Deployment", mode)
    c = container(deployment)
    assert c["command"] == ["python", "-m", f"services.{mode}"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"grpc": port_of(mode), "metrics": MODES[mode].metrics_port,
                     "probe": MODES[mode].health_port}
    assert env(c)["IMAGEGEN_PORT"] == str(port_of(mode))
    assert env(c)["IMAGEGEN_METRICS_PORT"] == str(MODES[mode].metrics_port)
    # Probes go to the probe port: it answers under a burst of uploads to the service's (tests/reliability).
    assert env(c)["IMAGEGEN_HEALTH_PORT"] == str(MODES[mode].health_port)
    for probe in ("readinessProbe", "startupProbe"):
        assert c[probe]["grpc"] == {"port": MODES[mode].health_port, "service": MODES[mode].full_service_name}
    for probe in ("readinessProbe", "startupProbe", "livenessProbe"):
        assert c[probe]["timeoutSeconds"] == 2
    assert c["livenessProbe"]["grpc"]["port"] == MODES[mode].health_port  # numeric, as gRPC probes need
    startup = c["startupProbe"]
    allowance = startup["periodSeconds"] * startup["failureThreshold"]
    assert allowance >= (1800 if overlay == "gpu" else 300)  # model loading (and download) time
    gpus = c["resources"].get("limits", {}).get("nvidia.com/gpu")
    assert gpus == (1 if overlay == "gpu" else None)
    model = env(c)["IMAGEGEN_MODEL"]["configMapKeyRef"]
    models = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == model["name"])
    assert models["data"][model["key"]] == ("tiny" if overlay == "cpu-tiny" else {
        "txt2img": "CompVis/stable-diffusion-v1-4",
        "img2img": "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "inpaint": "stable-diffusion-v1-5/stable-diffusion-inpainting"}[mode])


@pytest.mark.parametrize("name", [*MODE_NAMES, "gateway"])
def test_pods_run_locked_down(rendered, name):
    _overlay, docs = rendered
    deployment = find(docs, "Deployment", name)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    security = container(deployment)["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert security["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"] for m in container(deployment)["volumeMounts"]}
    assert "/tmp" in mounts


@pytest.mark.parametrize("mode", MODE_NAMES)
def test_model_cache_is_a_persistent_volume(rendered, mode):
    _overlay, docs = rendered
    pod = find(docs, "Deployment", mode)["spec"]["template"]["spec"]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    for claim in claims:
        find(docs, "PersistentVolumeClaim", claim)
    mount = next(m for m in container(find(docs, "Deployment", mode))["volumeMounts"] if m["name"] == "model-cache")
    assert mount["mountPath"] == "/models" and env(container(find(docs, "Deployment", mode)))["HF_HOME"].startswith("/models")


@pytest.mark.parametrize("mode", MODE_NAMES)
def test_headless_service_autoscaling_and_disruption_budget_per_mode(rendered, mode):
    _overlay, docs = rendered
    deployment = find(docs, "Deployment", mode)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = find(docs, "Service", mode)
    assert service["spec"]["clusterIP"] == "None"  # headless: clients see every pod
    assert all(labels.get(k) == v for k, v in service["spec"]["selector"].items())
    assert {p["port"] for p in service["spec"]["ports"]} == {port_of(mode), MODES[mode].metrics_port}
    hpa = find(docs, "HorizontalPodAutoscaler", mode)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": mode}
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "imagegen_queue_depth"
    pdb = find(docs, "PodDisruptionBudget", mode)
    assert all(labels.get(k) == v for k, v in pdb["spec"]["selector"]["matchLabels"].items())
    # The selectors of the three modes must not overlap.
    others = [find(docs, "Deployment", m)["spec"]["template"]["metadata"]["labels"] for m in MODE_NAMES if m != mode]
    assert not any(all(o.get(k) == v for k, v in service["spec"]["selector"].items()) for o in others)


def test_gateway_reaches_the_headless_services_in_round_robin(rendered):
    _overlay, docs = rendered
    gateway = find(docs, "Deployment", "gateway")
    c = container(gateway)
    assert c["command"] == ["python", "-m", "gateway_ui"]
    variables = env(c)
    for mode in MODE_NAMES:
        target = variables[f"IMAGEGEN_{mode.upper()}_ADDR"]
        assert target == f"dns:///{mode}:{port_of(mode)}"
        assert find(docs, "Service", mode)["spec"]["clusterIP"] == "None"
    assert variables["GATEWAY_HOST"] == "0.0.0.0"
    service = find(docs, "Service", "gateway")
    assert service["spec"]["ports"][0]["port"] == 7860
    assert container(gateway)["readinessProbe"]["httpGet"]["port"] == 7860


def test_one_image_runs_everything(rendered):
    overlay, docs = rendered
    images = {container(d)["image"] for d in docs if d["kind"] == "Deployment"}
    assert len(images) == 1
    assert images.pop().startswith("registry.example.com/imagegen:" if overlay == "gpu" else "imagegen:")


def test_gateway_keeps_its_outputs_on_a_persistent_volume(rendered):
    _overlay, docs = rendered
    gateway = find(docs, "Deployment", "gateway")
    env = {e["name"]: e.get("value") for e in container(gateway)["env"]}
    mount = next(m for m in container(gateway)["volumeMounts"] if m["name"] == "outputs")
    assert mount["mountPath"] == env["GATEWAY_OUTPUTS_DIR"] == "/outputs"
    volume = next(v for v in gateway["spec"]["template"]["spec"]["volumes"] if v["name"] == "outputs")
    find(docs, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])


@pytest.mark.parametrize("mode", MODE_NAMES)
def test_each_mode_serves_the_checkpoints_volume_read_only_with_its_pool_settings(rendered, mode):
    overlay, docs = rendered
    deployment = find(docs, "Deployment", mode)
    pod, c = deployment["spec"]["template"]["spec"], container(deployment)
    mount = next(m for m in c["volumeMounts"] if m["name"] == "checkpoints")
    assert mount["mountPath"] == "/checkpoints" and mount["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == "checkpoints")
    assert volume["persistentVolumeClaim"]["readOnly"] is True
    find(docs, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    # The pool's settings come from one ConfigMap (kustomize renames it; the reference follows).
    [source] = c["envFrom"]
    settings = find(docs, "ConfigMap", source["configMapRef"]["name"])["data"]
    assert pool_settings(mode, settings) == ("/checkpoints", 1, 0.5 if overlay == "cpu-tiny" else 8.0)
    # Within the pod's memory limit, with room for the process and the model it runs.
    limit_gi = float(c["resources"]["limits"]["memory"].removesuffix("Gi"))
    assert float(settings["IMAGEGEN_RAM_CACHE_GB"]) <= limit_gi / 2


@pytest.mark.parametrize("mode", MODE_NAMES)
def test_the_gpu_overlay_compiles_the_unet_with_its_cache_on_the_model_cache_volume(rendered, mode):
    overlay, docs = rendered
    c = container(find(docs, "Deployment", mode))
    settings = {name: value for name, value in env(c).items() if isinstance(value, str)}
    if overlay == "cpu-tiny":
        assert compile_settings(mode, settings) == (False, None)
        return
    compiled, cache = compile_settings(mode, settings)
    assert compiled is True
    mount = next(m for m in c["volumeMounts"] if m["name"] == "model-cache")
    assert cache.startswith(mount["mountPath"] + "/") and not mount.get("readOnly")
