"""A plot's cells: the base request with each cell's axis values, in A1111's order, every value checked first."""

from __future__ import annotations

import pytest

from gateway_ui.xyz.axes import MAX_CELLS, PlotError, by_label
from gateway_ui.xyz.plan import Plot, axis_values, cells
from services.client import make_request


def axis(label: str, text: str, where: str = "x", mode: str = "txt2img", **kwargs):
    return axis_values(by_label(mode, label), text, where, **kwargs)


def base(mode: str = "txt2img", **kwargs):
    kwargs = {"prompt": "a red fox", "negative_prompt": "blurry", "seed": 7, "steps": 4, **kwargs}
    return make_request(mode, **kwargs)


def test_cells_run_x_fastest_then_y_then_z():
    plot = Plot(axis("Steps", "2, 4"), axis("Seed", "10, 11", "y"), axis("CFG Scale", "3, 5", "z"))
    made = cells(plot, base())
    assert [(c.ix, c.iy, c.iz) for c in made][:4] == [(0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0)]
    got = [(c.request.params.num_inference_steps, c.request.params.seed, c.request.params.guidance_scale)
           for c in made]
    assert got == [(2, 10, 3), (4, 10, 3), (2, 11, 3), (4, 11, 3), (2, 10, 5), (4, 10, 5), (2, 11, 5), (4, 11, 5)]
    assert all(c.request.params.prompt == "a red fox" for c in made)  # the rest as the base request


def test_prompt_sr_replaces_the_first_value_in_both_prompts():
    plot = Plot(axis("Prompt S/R", "red, blue, green"))
    made = cells(plot, base(prompt="a red fox, red sky", negative_prompt="red eyes"))
    assert [c.request.params.prompt for c in made] == ["a red fox, red sky", "a blue fox, blue sky",
                                                        "a green fox, green sky"]
    assert made[2].request.params.negative_prompt == "green eyes"
    with pytest.raises(PlotError, match="Y values: Prompt S/R did not find 'cat'"):
        cells(Plot(y=axis("Prompt S/R", "cat, dog", "y")), base())


def test_sampler_checkpoint_clip_skip_and_strength():
    plot = Plot(axis("Sampler", "Euler a, DPM++ 2M", mode="img2img"),
                axis("Checkpoint name", "tiny, other [0123456789]", "y", mode="img2img"),
                axis("Denoising", "0.25, 0.5", "z", mode="img2img"))
    made = cells(plot, base("img2img", image=b"png"), models=["tiny", "other"])
    assert [c.request.params.scheduler for c in made[:2]] == ["euler_a", "dpmpp_2m"]
    assert [c.request.params.model for c in made[::2]][:2] == ["tiny", "other"]  # by name or A1111's title
    assert [c.request.strength for c in (made[0], made[-1])] == [0.25, 0.5]
    clip = cells(Plot(axis("Clip skip", "1, 2")), base())
    assert [c.request.params.clip_skip for c in clip] == [1, 2]


def test_unknown_names_are_refused_naming_the_axis():
    with pytest.raises(PlotError, match="X values: unknown sampler 'Nope'"):
        cells(Plot(axis("Sampler", "Euler, Nope")), base())
    with pytest.raises(PlotError, match="Z values: checkpoint 'other' not found; the service has tiny"):
        cells(Plot(z=axis("Checkpoint name", "other", "z")), base(), models=["tiny"])
    with pytest.raises(PlotError, match="Y values: Steps 0 is outside 1"):
        cells(Plot(y=axis("Steps", "0, 4", "y")), base())
    with pytest.raises(PlotError, match="X type: 'Hires steps' is not plotted here"):
        axis("Hires steps", "1, 2")
    with pytest.raises(PlotError, match="img2img and inpainting only"):
        cells(Plot(axis("Denoising", "0.5", mode="img2img")), base())


def test_a_plot_over_the_bound_is_refused_naming_the_axis():
    plot = Plot(axis("Seed", "1-8"), axis("Steps", "1-8", "y"), axis("CFG Scale", "1, 2", "z"))
    with pytest.raises(PlotError, match=rf"Z values: 8 x 8 x 2 = 128 cells; a plot makes at most {MAX_CELLS}"):
        cells(plot, base())
    assert len(cells(Plot(axis("Seed", "1-8"), axis("Steps", "1-8", "y")), base())) == 64


def test_seeds_fixed_kept_or_varied():
    random_seeds = axis("Seed", "-1, -1")
    assert all(0 <= s < 2**32 for s in random_seeds.values)  # fixed now, as A1111's fix_axis_seeds
    kept = cells(Plot(axis("Seed", "-1, 5", no_fixed_seeds=True), no_fixed_seeds=True), base())
    assert not kept[0].request.params.HasField("seed") and kept[1].request.params.seed == 5
    varied = cells(Plot(axis("Steps", "2, 4"), axis("CFG Scale", "3, 5", "y"), vary_seeds=(True, True, False)),
                   base(seed=100))
    assert [c.request.params.seed for c in varied] == [100, 101, 102, 103]
