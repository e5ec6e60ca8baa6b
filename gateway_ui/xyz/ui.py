"""The X/Y/Z plot in a tab: A1111's controls (axis types and values, legend, sub images and grids, seeds,
margins) and a "Generate X/Y/Z plot" button, also the gateway API's `/<mode>_xyz` endpoint.

`build_xyz(mode)` lays the controls out inside the tab; `wire_xyz(...)` makes the button run the plot
from the tab's own inputs: every cell sent at once through the hub, the grid first in the gallery, then
the cells when "Include Sub Images" is on; the grid saved beside the cells.
"""

from __future__ import annotations

import logging
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import gradio as gr

from .. import controlnet
from ..endpoints import named_endpoint
from ..backend import GenerationError, Interrupted, internal_error_message, new_error_id
from ..masks import InputError
from ..outputs import SaveError
from ..styles import UnknownStyle, apply_styles
from .axes import PlotError, by_label, plottable
from .plan import MAX_RANDOM_SEED, Plot, axis_values, cells
from .run import SCRIPT, draw, follow_all

log = logging.getLogger("gateway")

FLAGS = (("draw_legend", "Draw legend", True), ("include_lone_images", "Include Sub Images", False),
         ("include_sub_grids", "Include Sub Grids", False), ("no_fixed_seeds", "Keep -1 for seeds", False),
         ("vary_seeds_x", "Vary seeds for X", False), ("vary_seeds_y", "Vary seeds for Y", False),
         ("vary_seeds_z", "Vary seeds for Z", False))
HINT = "comma-separated; numbers also as ranges: 1-5, 1-5 (+2), 1-10 [5]"


@dataclass
class XYZControls:
    fields: dict  # API name -> component, in API order (after the tab's own inputs)
    button: object


def build_xyz(mode: str) -> XYZControls:
    """The plot's controls (inside an open tab layout), by the gateway API's parameter names."""
    labels = [axis.label for axis in plottable(mode)]
    fields = {}
    with gr.Accordion("X/Y/Z plot", open=False, elem_id=f"{mode}-xyz"):
        for letter, default in (("x", "Seed"), ("y", "Nothing"), ("z", "Nothing")):
            with gr.Row():
                # allow_custom_value: an API caller's unknown type reaches plot_of, which names the axis.
                fields[f"{letter}_type"] = gr.Dropdown(
                    labels, value=default, label=f"{letter.upper()} type", allow_custom_value=True,
                    elem_id=f"{mode}-xyz-{letter}-type")
                fields[f"{letter}_values"] = gr.Textbox(label=f"{letter.upper()} values", placeholder=HINT,
                                                        elem_id=f"{mode}-xyz-{letter}-values")
        with gr.Row():
            for name, label, value in FLAGS:
                fields[name] = gr.Checkbox(value, label=label, elem_id=f"{mode}-xyz-{name.replace('_', '-')}")
        fields["margin_size"] = gr.Slider(0, 500, value=0, step=2, label="Grid margins (px)",
                                          elem_id=f"{mode}-xyz-margin")
        button = gr.Button(f"Generate {SCRIPT}", elem_id=f"{mode}-xyz-generate")
    return XYZControls(fields, button)


def plot_of(mode: str, values: dict) -> Plot:
    """The Plot the controls describe; PlotError names the axis."""
    no_fixed = bool(values.get("no_fixed_seeds"))
    axes = {}
    for letter in "xyz":
        label = values.get(f"{letter}_type") or "Nothing"
        axis = by_label(mode, str(label))
        if axis is None or axis not in plottable(mode):
            choices = ", ".join(a.label for a in plottable(mode))
            raise PlotError(letter, f"{str(label)[:40]!r} is not one of {choices}", part="type")
        axes[letter] = axis_values(axis, str(values.get(f"{letter}_values") or ""), letter, no_fixed)
    margin = values.get("margin_size") or 0
    if not isinstance(margin, (int, float)) or not 0 <= margin <= 500:
        raise PlotError(None, "margin_size: 0..500 pixels")
    return Plot(axes["x"], axes["y"], axes["z"], draw_legend=values.get("draw_legend") is not False,
                include_lone_images=bool(values.get("include_lone_images")),
                include_sub_grids=bool(values.get("include_sub_grids")), no_fixed_seeds=no_fixed,
                vary_seeds=tuple(bool(values.get(f"vary_seeds_{letter}")) for letter in "xyz"),
                margin_size=int(margin))


def plot_endpoint(gateway, tab, controls: XYZControls, owner_of: Callable) -> Callable:
    """The button's function; its signature names the tab's inputs then the plot's (the API's names)."""
    names = [*tab.inputs, *controls.fields]
    mode, label = tab.mode, f"{tab.spec.contract.label} {SCRIPT}"

    def generate(*args):
        *values, progress, request = args
        named = dict(zip(names, values))
        try:
            outcome = _run(gateway, tab, named, progress, owner_of(request))
        except gr.Error:
            raise
        except (InputError, PlotError, UnknownStyle) as err:  # our own words, naming what to fix
            raise gr.Error(f"{label}: {str(err).removeprefix(SCRIPT + ': ')}.", print_exception=False) from None
        except Exception:  # noqa: BLE001 - a fault of the gateway itself: an id for the browser, the rest logged
            error_id = new_error_id()
            log.exception("%s X/Y/Z plot: internal error (id %s)", mode, error_id)
            raise gr.Error(internal_error_message(mode, error_id), title=f"{label} error",
                           print_exception=False) from None
        return outcome

    return named_endpoint(generate, names, f"{mode}_xyz")


def _run(gateway, tab, named: dict, progress, owner: str):
    mode, hub = tab.mode, gateway.hub
    base = tab.spec.request({name: named[name] for name in tab.inputs})
    controlnet.add_units(base, named, tab.spec.contract.takes_image, len(tab.controlnet.units))
    apply_styles(hub.styles, base, named.get("styles"))  # before Prompt S/R, which searches the prompts sent
    if base.params.num_images > 1:
        raise InputError("the plot makes one image per cell: set Batch size to 1")
    plot = plot_of(mode, named)
    if not base.params.HasField("seed") and not plot.no_fixed_seeds:
        base.params.seed = random.randrange(MAX_RANDOM_SEED)  # one seed for every cell, as A1111's fix_seed
    models = [m.name for m in gateway.backends[mode].info().models]
    requests = [cell.request for cell in cells(plot, base, models)]
    progress(0, desc=f"{SCRIPT}: {len(requests)} cells")
    outcomes = follow_all(hub, mode, requests, owner,
                          lambda done, total: progress((done, total), desc=f"{SCRIPT}: {done}/{total} cells",
                                                       unit="cells"))
    failure = next((o for o in outcomes if isinstance(o, GenerationError) and not isinstance(o, Interrupted)),
                   None)
    if failure is not None:
        raise gr.Error(str(failure), title=f"{tab.spec.contract.label} error", print_exception=False)
    plotted = draw(plot, outcomes)
    if plotted is None:
        gr.Info(f"{mode}: interrupted.", title=tab.spec.contract.label)
        return [], "", ""
    try:
        hub.save(mode, plotted.saved)
    except SaveError as err:  # a warning: the plot itself is still shown
        gr.Warning(str(err), title=f"{tab.spec.contract.label}: not saved")
    folder = Path(tempfile.mkdtemp(dir=gateway.out_dir))  # pruned with the tab's other results
    paths = []
    for i, image in enumerate(plotted.shown):
        path = folder / f"{mode}-xyz-{i}-{image.seed}.png"
        path.write_bytes(image.data)
        paths.append(str(path))
    seeds = ", ".join(str(image.seed) for image in plotted.made)
    return paths, seeds, "\n\n".join(image.infotext for image in plotted.shown)


def wire_xyz(gateway, tab, controls: XYZControls, owner_of: Callable, concurrency=None):
    """The button runs the plot into the tab's outputs; the API endpoint is `/<mode>_xyz`."""
    return controls.button.click(
        plot_endpoint(gateway, tab, controls, owner_of), inputs=[*tab.inputs.values(), *controls.fields.values()],
        outputs=tab.outputs, api_name=f"{tab.mode}_xyz", concurrency_id=tab.mode, show_progress_on=tab.outputs[2],
        concurrency_limit="default" if concurrency is None else concurrency)
