"""imagegen/v1/flags.py: a table of Flags gives the parser, the environment fallbacks and the bounds."""

import argparse

import pytest

from imagegen.v1.flags import Flag, FlagParser, boolean

FLAGS = (
    Flag("--workers", "APP_WORKERS", int, 4, "how many", min=1),
    Flag("--port", "APP_PORT", int, 80, min=0, max=65535),
    Flag("--level", "APP_LEVEL", str, "INFO", choices=("INFO", "DEBUG")),
    Flag("--warmup", "APP_WARMUP", boolean, True),
    Flag("--wait-ms", "APP_WAIT_MS", lambda text: float(text) / 1000, 0.01, dest="wait_s"),
    Flag("--no-save", "APP_SAVE", boolean, True, "keep nothing", dest="save", action="store_false"),
    Flag("--every", None, int, 2, min=0, bounds="0 (never) or more"),
)


def read(argv, environ=None):
    parser = FlagParser(hide_prefix="APP_", prog="app")
    parser.add_flags(FLAGS)
    return parser.read(argv, environ or {})


def refused(capsys, argv, environ=None) -> str:
    with pytest.raises(SystemExit):
        read(argv, environ)
    return capsys.readouterr().err


def test_defaults_then_the_environment_then_the_flag():
    assert vars(read([])) == {"workers": 4, "port": 80, "level": "INFO", "warmup": True, "wait_s": 0.01,
                              "save": True, "every": 2}
    environ = {"APP_WORKERS": "8", "APP_WAIT_MS": "20", "APP_SAVE": "off", "APP_LEVEL": "DEBUG"}
    args = read([], environ)
    assert (args.workers, args.wait_s, args.save, args.level) == (8, 0.02, False, "DEBUG")
    args = read(["--workers", "2", "--wait-ms", "5", "--level", "INFO"], environ)
    assert (args.workers, args.wait_s, args.level) == (2, 0.005, "INFO")
    assert read(["--no-save"], {"APP_SAVE": "1"}).save is False
    assert read([], {"EVERY": "9", "APP_EVERY": "9"}).every == 2  # a flag without a variable reads none


def test_bounds_name_the_flag_whichever_way_the_value_came(capsys):
    assert "--workers must be at least 1" in refused(capsys, ["--workers", "0"])
    assert "--workers must be at least 1" in refused(capsys, [], {"APP_WORKERS": "0"})
    assert "--port must be 0..65535" in refused(capsys, ["--port", "70000"])
    assert "--every must be 0 (never) or more" in refused(capsys, ["--every", "-1"])
    assert read(["--port", "0", "--every", "0"]).port == 0  # the bounds are inclusive


def test_a_bad_variable_is_refused_naming_it(capsys):
    assert "APP_WORKERS: invalid int value: 'many'" in refused(capsys, [], {"APP_WORKERS": "many"})
    assert "APP_LEVEL: invalid choice: 'TRACE'" in refused(capsys, [], {"APP_LEVEL": "TRACE"})
    assert "APP_WARMUP: expected true or false, got 'maybe'" in refused(capsys, [], {"APP_WARMUP": "maybe"})
    assert "argument --workers: invalid int value" in refused(capsys, ["--workers", "x"])  # argparse's own


def test_bool_parsing():
    for text in ("1", "true", "Yes", "ON"):
        assert boolean(text) is True
    for text in ("0", "False", "no", "off"):
        assert boolean(text) is False
    with pytest.raises(argparse.ArgumentTypeError, match="expected true or false"):
        boolean("maybe")
    assert read(["--warmup", "no"]).warmup is False and read([], {"APP_WARMUP": "false"}).warmup is False


def test_help_ends_each_flag_with_its_variable():
    parser = FlagParser(hide_prefix="APP_", prog="app")
    parser.add_flags(FLAGS[:1], "limits")
    parser.add_flags(FLAGS[5:])
    text = " ".join(parser.format_help().split())
    assert "--workers WORKERS how many [WORKERS]" in text and "limits:" in text
    assert "--no-save keep nothing [SAVE=0]" in text and "--every EVERY" in text
