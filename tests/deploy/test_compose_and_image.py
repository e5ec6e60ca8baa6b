"""Compose files checked by the compose-spec schema validator, the Dockerfile parsed, the health probe run."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from imagegen.v1.contract import MODE_NAMES, MODES
from tests.deploy.service_flags import compile_settings, pool_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def load(name: str) -> dict:
    # safe_load refuses tags such as `!reset` (Compose 2.24+), which docker-compose 1.29 cannot read.
    return yaml.safe_load((DEPLOY / name).read_text())


def merge(base, override):
    """Compose's merge of an override file, for the keys our files use: maps merge, the rest replaces."""
    result = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def validate(document: dict, tmp_path: Path, name: str) -> subprocess.CompletedProcess:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(document))
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
                           str(path)], capture_output=True, text=True, timeout=120)


def test_compose_file_is_valid_compose(tmp_path):
    done = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
                           str(DEPLOY / "compose.yaml")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_validator_rejects_a_broken_compose_file(tmp_path):
    broken = merge(load("compose.yaml"), load("compose.gpu.yaml"))
    broken["services"]["txt2img"]["deploy"]["resources"]["reservations"]["devices"][0]["gpu_ids"] = ["0"]
    assert validate(broken, tmp_path, "broken.yaml").returncode != 0


def test_cpu_variant_merged_is_valid_compose_without_gpus(tmp_path):
    merged = merge(load("compose.yaml"), load("compose.cpu.yaml"))
    done = validate(merged, tmp_path, "merged.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    for name, service in merged["services"].items():
        assert "deploy" not in service
        assert service["image"] == "${IMAGEGEN_IMAGE:-imagegen:cpu}"
        assert service["build"]["args"] == {"BASE_IMAGE": "imagegen-debian:bookworm", "PYTHON": "python3"}
        if name in MODE_NAMES:
            assert service["environment"]["IMAGEGEN_MODEL"] == "tiny" and service["environment"]["IMAGEGEN_DEVICE"] == "cpu"
            assert service["environment"]["IMAGEGEN_PORT"] == str(MODES[name].port)


@pytest.mark.parametrize("mode,gpu", [("txt2img", "0"), ("img2img", "1"), ("inpaint", "2")])
def test_the_gpu_variant_reserves_each_mode_its_own_gpu(mode, gpu, tmp_path):
    merged = merge(load("compose.yaml"), load("compose.gpu.yaml"))
    assert validate(merged, tmp_path, "gpu.yaml").returncode == 0
    devices = merged["services"][mode]["deploy"]["resources"]["reservations"]["devices"]
    assert len(devices) == 1 and devices[0]["capabilities"] == ["gpu"]
    # Configurable, with the default GPU index per mode.
    assert devices[0]["device_ids"] == [f"${{{mode.upper()}_GPU:-{gpu}}}"]
    assert "deploy" not in load("compose.yaml")["services"][mode]  # the CPU variant has nothing to remove


@pytest.mark.parametrize("mode", MODE_NAMES)
def test_each_mode_is_published_on_this_host_and_runs_as_the_manifests_say(mode):
    service = load("compose.yaml")["services"][mode]
    assert service["command"] == ["python", "-m", f"services.{mode}"]
    env = service["environment"]
    assert env["IMAGEGEN_PORT"] == str(MODES[mode].port)
    assert env["IMAGEGEN_METRICS_PORT"] == str(MODES[mode].metrics_port)
    assert env["IMAGEGEN_HEALTH_PORT"] == str(MODES[mode].health_port)  # what the image's HEALTHCHECK probes
    assert re.fullmatch(rf"\$\{{{mode.upper()}_MODEL:-[^}}]+\}}", env["IMAGEGEN_MODEL"])
    assert service["ports"] == [f"${{{mode.upper()}_PUBLISH:-127.0.0.1:{MODES[mode].port}}}:{MODES[mode].port}"]
    assert "model-cache:/models" in service["volumes"]
    assert service["user"] == "10001:10001" and service["read_only"] is True and service["tmpfs"] == ["/tmp"]
    assert service["cap_drop"] == ["ALL"]
    assert "test" not in service["healthcheck"]  # the image's own HEALTHCHECK


@pytest.mark.parametrize("variant", ["compose.cpu.yaml", "compose.gpu.yaml"])
def test_docker_compose_1_29_reads_every_variant(variant):
    # Debian's docker-compose, with its own schema (installed by `make docker-tools`).
    assert shutil.which("docker-compose"), "docker-compose is not installed: make docker-tools"
    done = subprocess.run(["docker-compose", "--project-name", "check", "--file", "compose.yaml", "--file", variant,
                           "config", "--quiet"], cwd=DEPLOY, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_gateway_waits_for_healthy_services_and_reaches_them_by_name():
    compose = load("compose.yaml")
    gateway = compose["services"]["gateway"]
    assert gateway["command"] == ["python", "-m", "gateway_ui"]
    assert gateway["depends_on"] == {mode: {"condition": "service_healthy"} for mode in MODE_NAMES}
    for mode in MODE_NAMES:
        assert gateway["environment"][f"IMAGEGEN_{mode.upper()}_ADDR"] == f"dns:///{mode}:{MODES[mode].port}"
    assert gateway["ports"] == ["${GATEWAY_PUBLISH:-127.0.0.1:7860}:7860"]  # localhost unless told
    assert "model-cache" in compose["volumes"]


def test_dockerfile_runs_every_role_as_non_root_with_a_grpc_health_check():
    parser = DockerfileParser(path=str(DEPLOY / "Dockerfile"))
    instructions = parser.structure
    # GPU by default: the CUDA PyTorch base, for the build stage and the final one alike.
    base = next(i["value"] for i in instructions if i["instruction"] == "ARG" and i["value"].startswith("BASE_IMAGE="))
    assert "cuda" in base and "pytorch" in base
    stages = [i["value"] for i in instructions if i["instruction"] == "FROM"]
    assert stages == ["${BASE_IMAGE} AS build", "${BASE_IMAGE}"]
    final = instructions[max(n for n, i in enumerate(instructions) if i["instruction"] == "FROM"):]
    users = [i["value"] for i in final if i["instruction"] == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    for copy_ in (i["value"].split() for i in instructions if i["instruction"] == "COPY"):
        if copy_[0].startswith("--from="):
            continue
        for source in copy_[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    # Build inputs stay in the build stage.
    assert not any("deploy/local" in i["value"] for i in final)
    healthcheck = next(i["value"] for i in instructions if i["instruction"] == "HEALTHCHECK")
    assert '"services.healthcheck"' in healthcheck
    cmd = next(i["value"] for i in instructions if i["instruction"] == "CMD")
    assert '"services.txt2img"' in cmd
    # Every command the deployments run is a module the image contains.
    for module in ["services.txt2img", "services.img2img", "services.inpaint", "gateway_ui", "services.healthcheck"]:
        path = ROOT / module.replace(".", "/")
        assert path.with_suffix(".py").exists() or (path / "__main__.py").exists(), module
    # Nothing is generated at start: no protoc or make in the command, generated code is copied in.
    assert "protoc" not in cmd and "make" not in cmd
    assert any(i["value"].startswith("imagegen/") for i in final if i["instruction"] == "COPY")
    run = " ".join(i["value"] for i in instructions if i["instruction"] == "RUN")
    assert "services.core.models.presets" in run  # the tiny model is baked in at build time


def test_the_build_context_holds_only_what_the_image_is_built_from():
    ignore = (ROOT / ".dockerignore").read_text().split("\n")
    assert "*" in ignore  # everything else (.venv, tests, .git, results) stays out of the context
    assert {"!imagegen/", "!services/", "!gateway_ui/", "!protos/", "!requirements.txt", "!deploy/local/"} <= set(ignore)


def test_health_probe_exits_zero_only_when_serving(services):
    probe = [sys.executable, "-m", "services.healthcheck"]
    serving = subprocess.run([*probe, "--addr", services["inpaint"].address, "--service", "imagegen.v1.Inpaint"],
                             cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert serving.returncode == 0 and "SERVING" in serving.stdout
    from tests.conftest import free_port

    down = subprocess.run([*probe, "--addr", f"127.0.0.1:{free_port()}", "--timeout", "1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=30)
    assert down.returncode == 1 and "UNAVAILABLE" in down.stdout


def test_health_probe_goes_to_the_probe_port_when_the_service_has_one():
    import os

    from tests.conftest import RunningService, free_port

    service = RunningService("txt2img", "--health-port", "0", "--warmup", "false")
    try:
        environ = {**os.environ, "IMAGEGEN_PORT": str(free_port()),  # nothing there: only the probe port answers
                   "IMAGEGEN_HEALTH_PORT": str(service.server.probe_port)}
        done = subprocess.run([sys.executable, "-m", "services.healthcheck", "--timeout", "5"], cwd=ROOT,
                              env=environ, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0 and f":{service.server.probe_port} (overall): SERVING" in done.stdout
    finally:
        service.stop()


def test_health_probe_reports_not_serving_while_loading():
    from tests.conftest import RunningService

    loading = RunningService("txt2img", load=False)
    try:
        done = subprocess.run([sys.executable, "-m", "services.healthcheck", "--addr", loading.address], cwd=ROOT,
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 1 and "NOT_SERVING" in done.stdout
    finally:
        loading.stop()


def test_health_probe_checks_the_gateway_over_http(gateway):
    done = subprocess.run([sys.executable, "-m", "services.healthcheck", "--http", gateway.url], cwd=ROOT,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout


def test_gateway_keeps_its_outputs_on_a_volume():
    compose = load("compose.yaml")
    gateway = compose["services"]["gateway"]
    assert gateway["environment"]["GATEWAY_OUTPUTS_DIR"] == "/outputs"
    assert "outputs:/outputs" in gateway["volumes"] and "outputs" in compose["volumes"]
    # A fresh named volume takes the ownership of the image's folder: the non-root user's.
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert re.search(r"chown (-R )?10001:10001 [^\n]*/outputs", dockerfile)


def test_the_stack_tool_needs_only_the_standard_library():
    # `make stack` runs it with the system's python3, before (and without) the virtual environment.
    import ast

    for path in sorted((DEPLOY / "stack").glob("*.py")):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
        outside = {n for n in names if n.split(".")[0] not in sys.stdlib_module_names | {"__future__"}}
        assert not outside, f"{path.name} imports {outside}"


@pytest.mark.parametrize("variant", ["compose.cpu.yaml", "compose.gpu.yaml"])
@pytest.mark.parametrize("mode", MODE_NAMES)
def test_each_mode_serves_the_checkpoints_volume_read_only_with_its_pool_settings(variant, mode):
    service = merge(load("compose.yaml"), load(variant))["services"][mode]
    assert "${CHECKPOINTS_DIR:-checkpoints}:/checkpoints:ro" in service["volumes"]
    assert "checkpoints" in load("compose.yaml")["volumes"]  # the default: a named volume
    # Each ${VARIABLE:-default} as compose reads it with the variable unset.
    defaults = {name: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)
                for name, value in service["environment"].items()}
    assert pool_settings(mode, defaults) == ("/checkpoints", 1, 8.0)


@pytest.mark.parametrize("variant", ["compose.cpu.yaml", "compose.gpu.yaml"])
def test_the_operator_s_checkpoints_folder_and_pool_settings_reach_every_mode(variant):
    # docker-compose 1.29 renders the files as they run, with an operator's settings (no engine needed).
    assert shutil.which("docker-compose"), "docker-compose is not installed: make docker-tools"
    settings = {"CHECKPOINTS_DIR": "/srv/sd-models", "MAX_LOADED": "2", "RAM_CACHE_GB": "12"}
    done = subprocess.run(["docker-compose", "--project-name", "check", "--file", "compose.yaml", "--file",
                           variant, "config"], cwd=DEPLOY, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **settings})
    assert done.returncode == 0, done.stderr
    rendered = yaml.safe_load(done.stdout)["services"]
    for mode in MODE_NAMES:
        assert "/srv/sd-models:/checkpoints:ro" in rendered[mode]["volumes"]
        assert pool_settings(mode, rendered[mode]["environment"]) == ("/checkpoints", 2, 12.0)
    assert not any("/checkpoints" in str(v) for v in rendered["gateway"].get("volumes", []))


@pytest.mark.parametrize("mode", MODE_NAMES)
def test_the_gpu_variant_compiles_the_unet_with_its_cache_on_the_model_cache_volume(mode):
    merged = merge(load("compose.yaml"), load("compose.gpu.yaml"))["services"][mode]
    settings = {name: value for name, value in merged["environment"].items() if name.startswith("IMAGEGEN_COMPILE")}
    compiled, cache = compile_settings(mode, settings)
    assert compiled is True
    volume = next(v for v in merged["volumes"] if v.startswith("model-cache:"))
    assert cache.startswith(volume.split(":")[1] + "/")
    cpu = merge(load("compose.yaml"), load("compose.cpu.yaml"))["services"][mode]
    assert not any(name.startswith("IMAGEGEN_COMPILE") for name in cpu.get("environment", {}))
