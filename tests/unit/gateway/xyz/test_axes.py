"""Axis values read as AUTOMATIC1111's X/Y/Z plot reads them (the examples of its wiki), and its axis lists."""

from __future__ import annotations

import pytest

from gateway_ui.xyz.axes import MAX_CELLS, PlotError, axis_list, by_label, parse_values, plottable


def values(label: str, text: str, mode: str = "txt2img") -> list:
    return parse_values(by_label(mode, label), text)


@pytest.mark.parametrize("text, expected", [
    ("1-5", [1, 2, 3, 4, 5]),
    ("1-5 (+2)", [1, 3, 5]),
    ("10-5 (-3)", [10, 7]),
    ("1-10 [5]", [1, 3, 5, 7, 10]),
    ("1, 2, 3", [1, 2, 3]),
    ("-1, 5", [-1, 5]),  # a negative number is a value, not a range
    (" 20 ,30", [20, 30]),
    ("1-3, 8", [1, 2, 3, 8]),
])
def test_whole_number_values_and_ranges(text, expected):
    assert values("Steps", text) == expected


@pytest.mark.parametrize("text, expected", [
    ("1-3 (+0.5)", [1.0, 1.5, 2.0, 2.5, 3.0]),
    ("0.0-1.0 [6]", [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),
    ("7, 7.5", [7.0, 7.5]),
])
def test_decimal_values_and_ranges(text, expected):
    assert values("CFG Scale", text) == pytest.approx(expected)


def test_text_values_are_csv_with_quotes():
    assert values("Prompt S/R", 'red, "blue, green", yellow') == ["red", "blue, green", "yellow"]
    assert values("Sampler", "Euler a, DPM++ 2M") == ["Euler a", "DPM++ 2M"]


def test_bad_values_name_the_axis():
    with pytest.raises(PlotError, match=r"Y values: 'abc' is not a whole number"):
        parse_values(by_label("txt2img", "Steps"), "4, abc", "y")
    with pytest.raises(PlotError, match="X values: no values for Seed"):
        parse_values(by_label("txt2img", "Seed"), " , ", "x")
    with pytest.raises(PlotError, match="step cannot be 0"):
        parse_values(by_label("txt2img", "Steps"), "1-5 (+0)", "x")


def test_a_range_too_long_is_refused_before_it_is_made():
    with pytest.raises(PlotError, match=rf"Z values: '1-1000000000' makes 1000000000 values.*{MAX_CELLS}"):
        parse_values(by_label("txt2img", "Seed"), "1-1000000000", "z")
    with pytest.raises(PlotError, match="asks for 100000 values"):
        parse_values(by_label("txt2img", "CFG Scale"), "1-2 [100000]", "x")


def test_the_axis_lists_keep_a1111s_indices():
    txt2img, img2img = axis_list("txt2img"), axis_list("img2img")
    # A1111 1.10's indices (webuiapi-style scripts send these numbers).
    assert [a.label for a in txt2img[:14]] == [
        "Nothing", "Seed", "Var. seed", "Var. strength", "Steps", "Hires steps", "CFG Scale", "Prompt S/R",
        "Prompt order", "Sampler", "Hires sampler", "Checkpoint name", "Negative Guidance minimum sigma",
        "Sigma Churn"]
    assert [a.label for a in img2img[:11]] == [
        "Nothing", "Seed", "Var. seed", "Var. strength", "Steps", "CFG Scale", "Image CFG Scale", "Prompt S/R",
        "Prompt order", "Sampler", "Checkpoint name"]
    assert txt2img.index(by_label("txt2img", "Clip skip")) == 24
    assert img2img.index(by_label("img2img", "Denoising")) == 24
    assert {a.label for a in plottable("img2img")} == {"Nothing", "Seed", "Steps", "CFG Scale", "Prompt S/R",
                                                      "Sampler", "Checkpoint name", "Clip skip", "Denoising"}
    assert "Denoising" not in {a.label for a in plottable("txt2img")}  # hires fix's there


def test_grid_captions_are_a1111s():
    assert by_label("txt2img", "Steps").caption(20) == "Steps: 20"
    assert by_label("txt2img", "CFG Scale").caption(7.0) == "CFG Scale: 7.0"
    assert by_label("txt2img", "Sampler").caption("Euler a") == "Euler a"
    assert by_label("txt2img", "Checkpoint name").caption("sd/dreamy") == "dreamy"
    assert by_label("txt2img", "Nothing").caption(None) == ""
