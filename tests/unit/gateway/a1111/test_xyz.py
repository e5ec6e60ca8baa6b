"""script_args of the A1111 API's x/y/z plot read as A1111 1.10 reads them (defaults for a short list)."""

from __future__ import annotations

import pytest

from gateway_ui.a1111.errors import ApiError
from gateway_ui.a1111.models import Img2ImgRequest, Txt2ImgRequest
from gateway_ui.a1111.xyz import Script, is_plot


def parse(args, cls=Txt2ImgRequest, **fields):
    return Script.parse(cls(script_name="x/y/z plot", script_args=args, **fields)).plot


def test_types_by_index_or_label_and_a1111s_defaults():
    plot = parse([4, "2-4"])  # only X given: Y and Z are Nothing, the legend drawn
    assert plot.x.axis.label == "Steps" and plot.x.values == [2, 3, 4]
    assert not plot.y.used and not plot.z.used and plot.draw_legend and not plot.include_lone_images
    plot = parse(["CFG Scale", "3, 5", [], 7, "red, blue", [], 0, "", [], "false", "true"])
    assert plot.x.values == [3.0, 5.0] and plot.y.axis.label == "Prompt S/R"
    assert plot.draw_legend is False and plot.include_lone_images is True
    assert parse([5, "0.5"], Img2ImgRequest).x.axis.label == "CFG Scale"  # img2img's list is its own


def test_choice_axes_read_the_dropdown_unless_csv_mode():
    assert parse([9, "", ["Euler a", "DPM++ 2M"]]).x.values == ["Euler a", "DPM++ 2M"]
    assert parse([9, "Euler", ["Euler a"]]).x.values == ["Euler a"]
    csv = [9, "Euler", ["Euler a"], 0, "", [], 0, "", [], True, False, False, False, False, False, False, 0, True]
    assert parse(csv).x.values == ["Euler"]


@pytest.mark.parametrize("args, position", [
    ([4, "2", [], 0, "", [], 0, "", [], "maybe"], 9),
    ([4, "2", [], 0, "", [], 0, "", [], True, False, False, False, False, False, False, 9999], 16),
    ([None, "2"], 0),
    ([4, "2"] + [False] * 17, None),
])
def test_bad_arguments_name_script_args(args, position):
    with pytest.raises(ApiError) as refused:
        parse(args)
    loc = refused.value.detail[0]["loc"]
    assert loc == ["body", "script_args"] + ([position] if position is not None else [])


def test_the_name_in_any_case_and_one_image_per_cell():
    assert is_plot("X/Y/Z plot") and is_plot("x/y/z plot") and not is_plot("prompt matrix") and not is_plot(None)
    with pytest.raises(ApiError) as refused:
        parse([4, "2, 4"], batch_size=2)
    assert refused.value.detail[0]["loc"] == ["body", "batch_size"]
