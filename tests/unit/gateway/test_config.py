"""gateway_ui/config.py: the gateway's flags, their GATEWAY_* / IMAGEGEN_*_ADDR variables and bounds."""

import pytest

from gateway_ui.config import GatewayConfig, load_config


def test_defaults_are_gateway_config_s():
    config = load_config([], environ={})
    assert config.addresses == {"txt2img": "127.0.0.1:50051", "img2img": "127.0.0.1:50052",
                                "inpaint": "127.0.0.1:50053"}
    for name in ("host", "port", "timeout_s", "answer_s", "max_upload_mb", "concurrency", "retries", "outputs_dir",
                 "save", "preview_every", "preview_ms"):
        assert getattr(config, name) == getattr(GatewayConfig, name), name


def test_variables_set_and_flags_win():
    assert load_config([], environ={"GATEWAY_ANSWER_TIMEOUT_S": "4.5"}).answer_s == 4.5
    environ = {"GATEWAY_TIMEOUT_S": "5", "GATEWAY_PREVIEW_MS": "0", "IMAGEGEN_IMG2IMG_ADDR": "gpu:1",
               "GATEWAY_SAVE": "yes please"}  # anything but 0/false/no/off keeps saving
    config = load_config(["--timeout", "7"], environ=environ)
    assert (config.timeout_s, config.preview_ms, config.save) == (7.0, 0, True)
    assert config.addresses["img2img"] == "gpu:1"
    assert load_config([], environ={"GATEWAY_SAVE": " Off "}).save is False


@pytest.mark.parametrize("argv, environ, message", [
    (["--preview-every", "-1"], {}, "--preview-every must be 0 (no previews) or more"),
    ([], {"GATEWAY_PREVIEW_MS": "-5"}, "--preview-ms must be 0 (every preview) or more"),
    ([], {"GATEWAY_CONCURRENCY": "0"}, "--concurrency must be at least 1 (generations forwarded at once"),
    ([], {"GATEWAY_PORT": "http"}, "GATEWAY_PORT: invalid int value: 'http'"),
    (["--answer-timeout", "0"], {}, "--answer-timeout must be at least 0.1 (seconds)"),
])
def test_bad_settings_are_refused_naming_them(argv, environ, message, capsys):
    with pytest.raises(SystemExit):
        load_config(argv, environ=environ)
    assert message in capsys.readouterr().err


def test_api_flags_and_the_ui_login_as_the_apis_fallback():
    assert load_config([], environ={}).api and load_config([], environ={}).api_credentials == ()
    assert not load_config(["--no-api"], environ={}).api and not load_config([], environ={"GATEWAY_API": "0"}).api
    both = load_config(["--api-auth", "a:1,b:2:3"], environ={"GATEWAY_USERNAME": "ui", "GATEWAY_PASSWORD": "x"})
    assert both.api_credentials == (("a", "1"), ("b", "2:3"))  # a password may hold a colon
    ui = load_config([], environ={"GATEWAY_USERNAME": "ui", "GATEWAY_PASSWORD": "x", "GATEWAY_API_AUTH": ""})
    assert ui.api_credentials == (("ui", "x"),)  # a locked UI never leaves an open API
    for bad in ("nopassword", "a:1,:2", "a:"):
        with pytest.raises(SystemExit):
            load_config(["--api-auth", bad], environ={})
    assert load_config(["--api-max-body-mb", "8"], environ={}).api_max_body_mb == 8
