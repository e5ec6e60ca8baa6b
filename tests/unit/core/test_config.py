from pathlib import Path

import pytest

from services.core.config import load_config
from tests.conftest import SERVER_MODES


def test_defaults_follow_the_original_app():
    for mode, port in (("txt2img", 50051), ("img2img", 50052), ("inpaint", 50053)):
        config = load_config(SERVER_MODES[mode], [], environ={})
        assert config.model == SERVER_MODES[mode].default_model and config.port == port
        assert config.host == "127.0.0.1" and config.device == "auto"
    assert SERVER_MODES["txt2img"].default_model == "CompVis/stable-diffusion-v1-4"


def test_environment_sets_and_flags_win():
    environ = {"IMAGEGEN_MODEL": "tiny", "IMAGEGEN_PORT": "6000", "IMAGEGEN_DEVICE": "cpu",
               "IMAGEGEN_CACHE_DIR": "/tmp/x", "IMAGEGEN_QUEUE_SIZE": "3", "IMAGEGEN_MAX_MESSAGE_MB": "2"}
    config = load_config(SERVER_MODES["img2img"], [], environ=environ)
    assert (config.model, config.port, config.device) == ("tiny", 6000, "cpu")
    assert config.cache_dir == Path("/tmp/x")
    assert config.limits.max_queue == 3 and config.limits.max_message_bytes == 2 * 1024 * 1024
    assert load_config(SERVER_MODES["img2img"], ["--port", "7000"], environ=environ).port == 7000


def test_model_config_is_a_folder_from_the_flag_or_environment(tmp_path, capsys):
    mode = SERVER_MODES["txt2img"]
    assert load_config(mode, [], environ={}).model_config is None
    assert load_config(mode, [], environ={"IMAGEGEN_MODEL_CONFIG": str(tmp_path)}).model_config == tmp_path
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit):
        load_config(mode, ["--model-config", str(tmp_path / "file")], environ={})
    assert "--model-config: " in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--max-size", "100"], ["--queue-size", "0"], ["--port", "70000"],
                                  ["--dtype", "float8"]])
def test_bad_settings_are_refused(argv):
    with pytest.raises(SystemExit):
        load_config(SERVER_MODES["txt2img"], argv, environ={})


def test_lora_dir_is_a_folder_from_the_flag_or_environment(tmp_path, capsys):
    mode = SERVER_MODES["txt2img"]
    assert load_config(mode, [], environ={}).lora_dir is None
    assert load_config(mode, [], environ={"IMAGEGEN_LORA_DIR": str(tmp_path)}).lora_dir == tmp_path
    with pytest.raises(SystemExit):
        load_config(mode, ["--lora-dir", str(tmp_path / "missing")], environ={})
    assert "--lora-dir: " in capsys.readouterr().err
