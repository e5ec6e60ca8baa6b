"""`make run`'s ports: one setting moves every one of them, so a second copy on one machine collides with
nothing; what cannot work is a usage error before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from services import launch
from services.launch import PORTS_PER_COPY, ports


def every_port(layout: launch.Ports) -> list[int]:
    return [*layout.grpc.values(), *layout.metrics.values(), layout.gateway, *layout.health.values()]


def test_without_a_base_every_port_is_the_documented_default():
    layout = ports(None)
    assert layout.grpc == {"txt2img": 50051, "img2img": 50052, "inpaint": 50053}
    assert layout.metrics == {"txt2img": 9051, "img2img": 9052, "inpaint": 9053}
    assert layout.gateway == 7860
    assert layout.health == {"txt2img": 9061, "img2img": 9062, "inpaint": 9063}


def test_a_base_moves_grpc_metrics_and_gateway_ports_together():
    layout = ports(50061)
    assert layout.grpc == {"txt2img": 50061, "img2img": 50062, "inpaint": 50063}
    assert layout.metrics == {"txt2img": 50064, "img2img": 50065, "inpaint": 50066}
    assert layout.gateway == 50067
    assert layout.health == {"txt2img": 50068, "img2img": 50069, "inpaint": 50070}
    assert every_port(layout) == list(range(50061, 50061 + PORTS_PER_COPY))


@pytest.mark.parametrize("first, second", [(None, 50061), (50061, 50061 + PORTS_PER_COPY), (9000, 9051)])
def test_two_copies_share_no_port(first, second):
    one, other = every_port(ports(first)), every_port(ports(second))
    assert len(set(one)) == len(one) == PORTS_PER_COPY
    assert not set(one) & set(other)


def test_an_explicit_gateway_port_wins_and_metrics_and_probe_ports_can_be_off():
    layout = ports(50061, gateway=8000, metrics=False, health=False)
    assert layout.gateway == 8000 and layout.metrics == layout.health == dict.fromkeys(layout.grpc, -1)
    assert ports(50061, gateway=8000).health == {"txt2img": 50068, "img2img": 50069, "inpaint": 50070}
    assert ports(None, gateway=7861).gateway == 7861


@pytest.mark.parametrize("base", [0, -5, 65536 - PORTS_PER_COPY + 1, 70000])
def test_a_base_without_room_for_every_port_is_refused(base):
    with pytest.raises(ValueError, match="must lie within 1..65535"):
        ports(base)
    assert max(every_port(ports(65536 - PORTS_PER_COPY))) == 65535


def test_each_service_is_given_its_metrics_and_probe_ports():
    command = launch.service_command("img2img", "tiny", "127.0.0.1", 50062, "cpu", 50065, 50069)
    assert command[command.index("--port") + 1] == "50062"
    assert command[command.index("--metrics-port") + 1] == "50065"
    assert command[command.index("--health-port") + 1] == "50069"


def test_each_service_is_given_the_sample_embeddings_unless_told_otherwise(tmp_path):
    folder = launch.sample_embeddings({"IMAGEGEN_CACHE_DIR": str(tmp_path)})
    assert folder.startswith(str(tmp_path)) and sorted(p.name for p in Path(folder).iterdir()) == [
        "tiny-embedding.safetensors", "tiny-xl-embedding.safetensors"]
    command = launch.service_command("txt2img", "tiny", "127.0.0.1", 50061, "cpu", -1, -1, embeddings_dir=folder)
    assert command[command.index("--embeddings-dir") + 1] == folder
    assert "--embeddings-dir" not in launch.service_command("txt2img", "tiny", "127.0.0.1", 50061, "cpu", -1)


def test_each_service_is_given_the_sample_controlnets_unless_told_otherwise(tmp_path):
    from services.core.models import controlnets

    folder = launch.sample_controlnets({"IMAGEGEN_CACHE_DIR": str(tmp_path)})
    assert folder.startswith(str(tmp_path))
    assert {name: entry.family for name, entry in controlnets.available(Path(folder)).items()} == {
        "tiny-controlnet": "sd1", "tiny-controlnet-original": "sd1", "tiny-xl-controlnet": "sdxl"}
    command = launch.service_command("txt2img", "tiny", "127.0.0.1", 50061, "cpu", -1, -1, controlnet_dir=folder)
    assert command[command.index("--controlnet-dir") + 1] == folder
    assert "--controlnet-dir" not in launch.service_command("txt2img", "tiny", "127.0.0.1", 50061, "cpu", -1)


@pytest.mark.parametrize("argv, environ, words", [
    (["--base-port", "65530"], {}, "must lie within"),
    ([], {"IMAGEGEN_BASE_PORT": "many"}, "invalid int value"),
    ([], {"IMAGEGEN_METRICS_PORT": "9100"}, "one port"),  # before: the second and third service failed to bind
    ([], {"IMAGEGEN_HEALTH_PORT": "9100"}, "one port"),
])
def test_what_cannot_work_is_a_usage_error_before_anything_starts(monkeypatch, capsys, argv, environ, words):
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_:
        launch.main(argv)
    assert exit_.value.code == 2 and words in capsys.readouterr().err


def test_on_the_embedded_model_the_services_are_given_a_second_checkpoint(tmp_path):
    from services.core.models.catalog import scan
    from services.core.models.presets import tiny_path
    from tests.conftest import CACHE_DIR

    folder = launch.demo_models(CACHE_DIR, tmp_path / "models")
    assert (folder / "tiny-xl").resolve() == tiny_path(CACHE_DIR, False, "tiny-xl").resolve()
    listed = [(entry.name, entry.family, entry.unusable) for entry in scan(folder, False)]
    assert listed == [("tiny-xl", "sdxl", "")]
    (folder / "tiny-xl").unlink()
    (folder / "tiny-xl").symlink_to(tmp_path / "gone")  # a cleared cache: the link is made again
    assert launch.demo_models(CACHE_DIR, folder) == folder
    assert (folder / "tiny-xl" / "model_index.json").is_file()
    command = launch.service_command("inpaint", "tiny", "127.0.0.1", 50053, "cpu", -1, -1, folder)
    assert command[command.index("--models-dir") + 1] == str(folder)
    assert "--models-dir" not in launch.service_command("inpaint", "tiny", "127.0.0.1", 50053, "cpu", -1)


def test_each_service_is_given_the_sample_loras_unless_told_otherwise(tmp_path):
    folder = launch.sample_loras({"IMAGEGEN_CACHE_DIR": str(tmp_path)})
    assert folder.startswith(str(tmp_path)) and sorted(p.name for p in Path(folder).iterdir()) == [
        "tiny-lora.safetensors", "tiny-xl-lora.safetensors"]
    command = launch.service_command("txt2img", "tiny", "127.0.0.1", 50061, "cpu", -1, -1, lora_dir=folder)
    assert command[command.index("--lora-dir") + 1] == folder
    assert "--lora-dir" not in launch.service_command("txt2img", "tiny", "127.0.0.1", 50061, "cpu", -1)
    environ = {"IMAGEGEN_CACHE_DIR": str(tmp_path)}
    embedded = {"txt2img": "tiny", "img2img": "tiny", "inpaint": "tiny-xl"}
    assert launch.lora_folder(None, embedded, environ) == folder
    assert launch.lora_folder("", embedded, environ) == ""  # none, as asked
    assert launch.lora_folder("/srv/loras", embedded, environ) == "/srv/loras"
    assert launch.lora_folder(None, {**embedded, "inpaint": "/models/sd15"}, environ) == ""


def test_the_img2img_and_txt2img_services_are_given_the_tiny_esrgan(tmp_path):
    from imagegen.v1.contract import MODES

    folder = launch.tiny_upscalers({"IMAGEGEN_CACHE_DIR": str(tmp_path)})
    assert folder.startswith(str(tmp_path))
    assert sorted(p.name for p in Path(folder).iterdir()) == ["tiny-esrgan-2x.safetensors"]
    # What main passes it to: Upscale's service, and txt2img's hires fix (its upscaler dropdown lists it).
    assert [mode for mode, contract in MODES.items() if contract.uses_upscalers] == ["txt2img", "img2img"]
    assert [mode for mode, contract in MODES.items() if contract.upscales] == ["img2img"]
    command = launch.service_command("img2img", "tiny", "127.0.0.1", 50052, "cpu", -1, -1, upscaler_dir=folder)
    assert command[command.index("--upscaler-dir") + 1] == folder
    assert "--upscaler-dir" not in launch.service_command("inpaint", "tiny", "127.0.0.1", 50053, "cpu", -1)
