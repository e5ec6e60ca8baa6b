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


def test_limits_are_the_contract_s_fields_and_each_flag_sets_one():
    from dataclasses import fields

    from imagegen.v1 import imagegen_pb2 as pb
    from services.core.config import DEFAULT_FLAGS, LIMIT_FLAGS, Defaults, Limits

    names = [f.name for f in fields(Limits)]
    assert names == [*pb.Limits.DESCRIPTOR.fields_by_name, "batch_wait_s"]
    assert {flag.name for flag in LIMIT_FLAGS} <= set(names)
    assert {flag.name for flag in DEFAULT_FLAGS} <= {f.name for f in fields(Defaults)}


def test_limit_flags_and_variables_reach_limits_with_their_units():
    argv = ["--max-size", "1024", "--max-pixels", "4096", "--max-steps", "9", "--max-images", "2",
            "--max-batch-size", "3", "--default-steps", "20", "--default-size", "256"]
    environ = {"IMAGEGEN_BATCH_WAIT_MS": "25", "IMAGEGEN_MAX_MESSAGE_MB": "0.5"}
    config = load_config(SERVER_MODES["txt2img"], argv, environ=environ)
    limits = config.limits
    assert (limits.max_width, limits.max_height, limits.max_pixels, limits.max_steps, limits.max_images) == (
        1024, 1024, 4096, 9, 2)
    assert (limits.max_batch_images, limits.batch_wait_s, limits.max_message_bytes) == (3, 0.025, 512 * 1024)
    assert config.defaults.num_inference_steps == 9 and config.defaults.size == 256  # steps within the limit


@pytest.mark.parametrize("argv, environ, message", [
    (["--max-steps", "0"], {}, "--max-steps must be at least 1"),
    ([], {"IMAGEGEN_QUEUE_SIZE": "0"}, "--queue-size must be at least 1"),
    (["--metrics-port", "-2"], {}, "--metrics-port must be -1 (off) or 0..65535"),
    ([], {"IMAGEGEN_PORT": "x"}, "IMAGEGEN_PORT: invalid int value: 'x'"),
    ([], {"IMAGEGEN_WARMUP": "maybe"}, "IMAGEGEN_WARMUP: expected true or false"),
    (["--tls-cert", "/etc/hostname"], {}, "--tls-cert and --tls-key go together"),
])
def test_bad_settings_are_refused_naming_them(argv, environ, message, capsys):
    with pytest.raises(SystemExit):
        load_config(SERVER_MODES["txt2img"], argv, environ=environ)
    assert message in capsys.readouterr().err


def test_get_info_reports_the_configured_limits_field_for_field():
    from dataclasses import asdict

    from grpc_health.v1 import health

    from imagegen.v1 import imagegen_pb2 as pb
    from services.core.rpc.servicer import ModeServicer
    from services.core.work.runtime import ModeRuntime

    mode = SERVER_MODES["inpaint"]
    argv = ["--max-size", "1024", "--queue-size", "5", "--max-message-mb", "3"]
    config = load_config(mode, argv, environ={})
    runtime = ModeRuntime(mode, config, health.HealthServicer())  # not loaded: GetInfo says what it can
    info = ModeServicer(runtime).GetInfo(pb.GetInfoRequest(), None)
    sent = {f.name: value for f, value in info.limits.ListFields()}
    expected = {name: value for name, value in asdict(config.limits).items() if name != "batch_wait_s"}
    assert sent == expected and sent["max_queue"] == 5 and sent["max_width"] == 1024
    assert info.max_clip_skip == 12  # the contract's bound until the model (and its text encoder) is loaded


def test_upscaler_dir_is_a_folder_from_the_flag_or_environment(tmp_path, capsys):
    mode = SERVER_MODES["img2img"]
    assert load_config(mode, [], environ={}).upscaler_dir is None
    assert load_config(mode, [], environ={"IMAGEGEN_UPSCALER_DIR": str(tmp_path)}).upscaler_dir == tmp_path
    assert load_config(mode, ["--upscaler-dir", str(tmp_path)], environ={}).upscaler_dir == tmp_path
    with pytest.raises(SystemExit):
        load_config(mode, ["--upscaler-dir", str(tmp_path / "missing")], environ={})
    assert "--upscaler-dir: " in capsys.readouterr().err


def test_compile_is_a_switch_or_its_variable_with_buckets_ascending_and_a_cache_folder(tmp_path):
    mode = SERVER_MODES["txt2img"]
    plain = load_config(mode, [], environ={})
    assert plain.compile is False and plain.compile_buckets == (1, 2, 4, 8, 16) and plain.compile_cache_dir is None
    assert load_config(mode, ["--compile"], environ={}).compile is True
    assert load_config(mode, [], environ={"IMAGEGEN_COMPILE": "true"}).compile is True
    config = load_config(mode, ["--compile-buckets", "8,2,2,4", "--compile-cache-dir", str(tmp_path)], environ={})
    assert config.compile_buckets == (2, 4, 8) and config.compile_cache_dir == tmp_path


@pytest.mark.parametrize("text", ["0,2", "", "two"])
def test_bad_compile_buckets_are_refused(text):
    with pytest.raises(SystemExit):
        load_config(SERVER_MODES["txt2img"], ["--compile-buckets", text], environ={})


def test_compile_sizes_are_widths_by_heights_or_squares_in_order_each_once():
    mode = SERVER_MODES["txt2img"]
    assert load_config(mode, [], environ={}).compile_sizes == ()  # the default size alone
    config = load_config(mode, ["--compile-sizes", "512, 768x512,512x512,512X768"], environ={})
    assert config.compile_sizes == ((512, 512), (768, 512), (512, 768))
    assert load_config(mode, [], environ={"IMAGEGEN_COMPILE_SIZES": "1024"}).compile_sizes == ((1024, 1024),)


@pytest.mark.parametrize("text,problem", [("500", "500x500: sides must be multiples of 8"),
                                          ("512x32", "512x32: sides must be multiples of 8 from 64"),
                                          ("4096", "4096x4096: sides must be multiples of 8 from 64 to --max-size"),
                                          ("big", "invalid sizes value")])
def test_bad_compile_sizes_are_refused_naming_the_size(text, problem, capsys):
    with pytest.raises(SystemExit):
        load_config(SERVER_MODES["txt2img"], ["--compile-sizes", text], environ={})
    assert problem in capsys.readouterr().err
