"""The `x/y/z plot` script of the A1111 API: `script_args` read as A1111 1.10's scripts/xyz_grid.py takes
them, and its answer (the grid first, then the cells when include_lone_images).

script_args, positionally (a shorter list takes the script's UI defaults for the rest, as A1111 does):
x_type, x_values, x_values_dropdown, y_type, y_values, y_values_dropdown, z_type, z_values,
z_values_dropdown, draw_legend, include_lone_images, include_sub_grids, no_fixed_seeds, vary_seeds_x,
vary_seeds_y, vary_seeds_z, margin_size, csv_mode. A type is an index into A1111's axis list for the
endpoint (axes.axis_list; its label is taken too). For Sampler and Checkpoint name A1111 reads the
dropdown list unless csv_mode; here the text is read when the list is empty, so neither is lost.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from imagegen.v1.contract import IMG2IMG, TXT2IMG
from imagegen.v1.infotext import split_infotext

from .errors import field_error
from ..hub import Hub
from ..xyz.axes import PlotError, axis_list, csv_text
from ..xyz.plan import Plot, axis_values, cells
from ..xyz.run import SCRIPT, Plotted

NAME = SCRIPT.lower()  # as /scripts lists it
ARGS = ("x_type", "x_values", "x_values_dropdown", "y_type", "y_values", "y_values_dropdown", "z_type", "z_values",
        "z_values_dropdown", "draw_legend", "include_lone_images", "include_sub_grids", "no_fixed_seeds",
        "vary_seeds_x", "vary_seeds_y", "vary_seeds_z", "margin_size", "csv_mode")
# The script's UI defaults: X is Seed, Y and Z Nothing, the legend drawn.
DEFAULTS = (1, "", [], 0, "", [], 0, "", [], True, False, False, False, False, False, False, 0, False)
MAX_MARGIN = 500  # A1111's slider
_POSITION = {name: i for i, name in enumerate(ARGS)}


def is_plot(script_name: str | None) -> bool:
    return bool(script_name) and script_name.strip().lower() == NAME


def _where(name: str) -> str:
    return f"script_args.{_POSITION[name]}"


def _flag(args: list, name: str) -> bool:
    value = args[_POSITION[name]]
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if isinstance(value, (bool, int)) and value in (0, 1):
        return bool(value)
    raise field_error(_where(name), f"{name}: true or false")


def _text(args: list, name: str) -> str:
    value = args[_POSITION[name]]
    if isinstance(value, list):
        return csv_text([str(v) for v in value])
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise field_error(_where(name), f"{name}: a text of comma-separated values")


@dataclass
class Script:
    """A parsed `x/y/z plot` call: the plot, and how its cells become the call's requests."""

    plot: Plot
    mode_list: str  # whose axis list the types index: txt2img's or img2img's
    arg_of: dict  # axis letter -> the position of its values in script_args (errors name it)
    random_cells: bool = False  # "Keep -1 for seeds" with seed -1: each cell its own random seed

    @classmethod
    def parse(cls, req) -> "Script":
        """The plot of a request whose script_name is the x/y/z plot; a 422 naming script_args (or
        batch_size, n_iter) for anything it cannot make."""
        if len(req.script_args) > len(ARGS):
            raise field_error("script_args", f"the x/y/z plot takes at most {len(ARGS)} arguments: "
                              + ", ".join(ARGS))
        for name, value in (("batch_size", req.batch_size), ("n_iter", req.n_iter)):
            if value != 1:
                raise field_error(name, "the x/y/z plot makes one image per cell here: 1")
        args = [*req.script_args, *DEFAULTS[len(req.script_args):]]
        mode = IMG2IMG.name if hasattr(req, "init_images") else TXT2IMG.name
        options = axis_list(mode)
        csv_mode, no_fixed = _flag(args, "csv_mode"), _flag(args, "no_fixed_seeds")
        chosen = {}
        for letter in "xyz":
            kind = args[_POSITION[f"{letter}_type"]]
            if isinstance(kind, str) and not kind.strip().lstrip("-").isdigit():
                axis = next((a for a in options if a.label.lower() == kind.strip().lower()), None)
            elif isinstance(kind, (int, str)) and not isinstance(kind, bool) and 0 <= int(kind) < len(options):
                axis = options[int(kind)]
            else:
                axis = None
            if axis is None:
                raise field_error(_where(f"{letter}_type"), f"{letter}_type: an index into the {mode} axis list "
                                  f"(0..{len(options) - 1}) or an axis name")
            text = _text(args, f"{letter}_values")
            dropdown = args[_POSITION[f"{letter}_values_dropdown"]] or []
            if axis.choices and not csv_mode and dropdown:
                if not isinstance(dropdown, list):
                    raise field_error(_where(f"{letter}_values_dropdown"), "a list of values")
                text = csv_text([str(v) for v in dropdown])
            try:
                chosen[letter] = axis_values(axis, text, letter, no_fixed)
            except PlotError as err:
                name = f"{letter}_type" if err.part == "type" else f"{letter}_values"
                raise field_error(_where(name), str(err)) from None
        margin = args[_POSITION["margin_size"]]
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin <= MAX_MARGIN:
            raise field_error(_where("margin_size"), f"margin_size: 0..{MAX_MARGIN} pixels")
        plot = Plot(chosen["x"], chosen["y"], chosen["z"], draw_legend=_flag(args, "draw_legend"),
                    include_lone_images=_flag(args, "include_lone_images"),
                    include_sub_grids=_flag(args, "include_sub_grids"), no_fixed_seeds=no_fixed,
                    vary_seeds=tuple(_flag(args, f"vary_seeds_{letter}") for letter in "xyz"),
                    margin_size=int(margin))
        values_at = {letter: _POSITION[f"{letter}_values"] for letter in "xyz"}
        return cls(plot, mode, values_at, no_fixed and req.seed == -1)

    @staticmethod
    def base(req):
        """The request without its script: what every cell starts from."""
        return req.model_copy(update={"script_name": None, "script_args": []})

    def requests(self, base_request, hub: Hub, mode: str, schedule: str = "") -> list:
        """Every cell's request (asks GetInfo for the checkpoint names: a thread's work)."""
        models = [m.name for m in hub.backends[mode].info().models] if any(
            a.axis.field == "model" for a in self.plot.axes.values()) else []
        if self.random_cells:
            base_request.params.ClearField("seed")  # mapping fixed one; A1111 keeps -1 here
        try:
            return [cell.request for cell in cells(self.plot, base_request, models, schedule)]
        except PlotError as err:
            where = f"script_args.{self.arg_of[err.axis]}" if err.axis else "script_args"
            raise field_error(where, str(err)) from None

    def answer(self, reply: dict, plotted: Plotted | None, send_images: bool = True) -> dict:
        """A1111's answer for the plot: the grid(s) first, the cells after them when include_lone_images;
        info's infotexts one per image, index_of_first_image after the grids."""
        info = json.loads(reply["info"])
        if plotted is None:  # every cell stopped: A1111 answers with no images
            info.update(infotexts=[], all_seeds=[], index_of_first_image=0)
            return {**reply, "images": [], "info": json.dumps(info)}
        shown = plotted.shown
        info.update(infotexts=[image.infotext for image in shown], index_of_first_image=len(plotted.grids),
                    all_seeds=[image.seed for image in plotted.made], seed=plotted.made[0].seed,
                    all_prompts=[_prompt_of(image) for image in plotted.made])
        images = [base64.b64encode(image.data).decode() for image in shown] if send_images else []
        return {**reply, "images": images, "info": json.dumps(info)}


def _prompt_of(image) -> str:
    return split_infotext(image.infotext)[0]


def script_of(req) -> Script | None:
    """The request's x/y/z plot; None without one (another script is left to mapping's refusal)."""
    return Script.parse(req) if is_plot(req.script_name) else None
