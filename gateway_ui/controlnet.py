"""A tab's ControlNet section: an Accordion of units ("ControlNet Unit 0..N-1", limits.max_control_units),
each as sd-webui-controlnet lays one out: enable, control image, preprocessor with its sliders (shown and
relabelled per GetInfo's PreprocessorInfo.params), model (GetInfo's controlnets), weight, guidance
start/end, control mode, resize mode, pixel perfect, and 💥 Preview showing the detected map (the
Preprocess RPC).

Its inputs join the tab's request: their API names are `controlnet_<i>_<field>` (the ControlUnit's field
names), last in the tab's API signature. A unit left out by an API caller (its values None) is disabled.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import gradio as gr
from PIL import Image

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import (CONTROL_MODE_LABELS, CONTROL_RESIZE_LABELS, DEFAULT_CONTROL_RESIZE, LIMITS,
                                  MAX_CONTROL_WEIGHT)
from services.client import control_unit

from . import control_catalog as catalog
from .backend import GenerationError, ModeBackend
from .masks import InputError

NO_MODELS_HINT = "No ControlNet models: start the service with `--controlnet-dir DIR`."
# A unit's inputs, in API order (after its index: controlnet_0_enabled, controlnet_0_image, ...).
UNIT_FIELDS = ("enabled", "image", "preprocessor", "processor_res", "threshold_a", "threshold_b", "model",
               "weight", "guidance_start", "guidance_end", "control_mode", "resize_mode", "pixel_perfect")
# The sliders' ranges before a preprocessor names its own (the extension's resolution slider; 0..255).
_SLIDER_RANGES = {"processor_res": (64, 2048, 512, 1), "threshold_a": (0, 255, 100, 1),
                  "threshold_b": (0, 255, 200, 1)}


def api_name(index: int, name: str) -> str:
    return f"controlnet_{index}_{name}"


def unit_count(info: pb.ServiceInfo) -> int:
    return info.limits.max_control_units or LIMITS.max_control_units


@dataclass
class UnitControls:
    index: int
    fields: dict  # UNIT_FIELDS -> component
    preview: object  # 💥
    detected: object  # the map it shows


@dataclass
class ControlNetSection:
    units: list[UnitControls]
    hint: object  # shown while the service lists no ControlNet
    fields: dict = field(default_factory=dict)  # API name -> component, in API order

    def __post_init__(self):
        self.fields = {api_name(u.index, name): u.fields[name] for u in self.units for name in UNIT_FIELDS}


def model_choices(info: pb.ServiceInfo) -> list[tuple[str, str]]:
    return [(catalog.model_title(cn), cn.name) for cn in info.controlnets]


def slider_updates(info: pb.ServiceInfo, preprocessor: str | None) -> list:
    """The three sliders for a preprocessor: shown with its labels, ranges and defaults, hidden where it
    has no such parameter."""
    params = catalog.preprocessors(info).get(catalog.preprocessor_name(preprocessor or ""), {})
    updates = []
    for name in catalog.PARAM_FIELDS:
        param = params.get(name)
        updates.append(gr.update(visible=False) if param is None else gr.update(
            visible=True, label=param.label, minimum=param.min, maximum=param.max, step=param.step or 1,
            value=param.default_value))
    return updates


def build_controlnet(mode: str, info: pb.ServiceInfo, takes_image: bool, checked) -> ControlNetSection:
    """Lay the section out (inside the tab's column). `takes_image`: the mode has an input image (a unit
    without a control image uses it); `checked(component, what)`: the tab's check of an uploaded image
    (tabs.checked_at_upload)."""
    preprocessors = list(catalog.preprocessors(info))
    models = model_choices(info)
    units = []
    with gr.Accordion("ControlNet", open=False, elem_id=f"{mode}-controlnet"):
        hint = gr.Markdown(NO_MODELS_HINT, visible=not models, elem_id=f"{mode}-controlnet-hint")
        with gr.Tabs():
            for i in range(unit_count(info)):
                with gr.Tab(f"ControlNet Unit {i}", elem_id=f"{mode}-controlnet-{i}"):
                    units.append(_build_unit(mode, i, preprocessors, models, takes_image, checked))
    return ControlNetSection(units, hint)


def _build_unit(mode: str, i: int, preprocessors: list[str], models: list, takes_image: bool,
                checked) -> UnitControls:
    eid = f"{mode}-cn{i}"
    enabled = gr.Checkbox(False, label="Enable", elem_id=f"{eid}-enabled")
    with gr.Row():
        image = gr.Image(type="filepath", image_mode=None, label="Control image" + (
            " (none: the input image)" if takes_image else ""), sources=["upload", "clipboard"],
            height=240, elem_id=f"{eid}-image")
        detected = gr.Image(type="pil", label="Detected map", interactive=False, height=240,
                            elem_id=f"{eid}-detected")
    image = checked(image, f"ControlNet Unit {i}: the control image")
    with gr.Row():
        # Custom values let through: the choices of the page's load are not the API's; the service judges.
        preprocessor = gr.Dropdown(preprocessors, value=catalog.NONE, label="Preprocessor", allow_custom_value=True,
                                   elem_id=f"{eid}-preprocessor")
        preview = gr.Button("💥", size="sm", scale=0, min_width=40, elem_id=f"{eid}-preview")
        model = gr.Dropdown(models, value=models[0][1] if models else None, label="Model",
                            allow_custom_value=True, elem_id=f"{eid}-model")
    with gr.Row():
        sliders = {name: gr.Slider(least, most, value=value, step=step, label=name, visible=False,
                                   elem_id=f"{eid}-{name}")
                   for name, (least, most, value, step) in _SLIDER_RANGES.items()}
    with gr.Row():
        weight = gr.Slider(0, MAX_CONTROL_WEIGHT, value=1.0, step=0.05, label="Control Weight",
                           elem_id=f"{eid}-weight")
        start = gr.Slider(0, 1, value=0.0, step=0.01, label="Starting Control Step", elem_id=f"{eid}-start")
        end = gr.Slider(0, 1, value=1.0, step=0.01, label="Ending Control Step", elem_id=f"{eid}-end")
    labels = list(CONTROL_MODE_LABELS.values())
    control_mode = gr.Radio(labels, value=labels[0], label="Control Mode", elem_id=f"{eid}-control-mode")
    resize_mode = gr.Radio(list(CONTROL_RESIZE_LABELS.values()), value=CONTROL_RESIZE_LABELS[DEFAULT_CONTROL_RESIZE],
                           label="Resize Mode", elem_id=f"{eid}-resize-mode")
    pixel_perfect = gr.Checkbox(False, label="Pixel Perfect", elem_id=f"{eid}-pixel-perfect")
    fields = {"enabled": enabled, "image": image, "preprocessor": preprocessor, **sliders, "model": model,
              "weight": weight, "guidance_start": start, "guidance_end": end, "control_mode": control_mode,
              "resize_mode": resize_mode, "pixel_perfect": pixel_perfect}
    return UnitControls(i, fields, preview, detected)


# -- the request -----------------------------------------------------------------------------------------

def _number(values: dict, i: int, name: str):
    value = values.get(api_name(i, name))
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(f"ControlNet Unit {i}: {name} must be a number, not {str(value)[:40]!r}") from None


def unit_of(values: dict, i: int, takes_image: bool) -> pb.ControlUnit | None:
    """Unit i of a tab's values by API name; None when it is not enabled. InputError names what to fix."""
    if not values.get(api_name(i, "enabled")):
        return None
    where = f"ControlNet Unit {i}"
    model = values.get(api_name(i, "model"))
    if not model:
        raise InputError(f"{where}: choose a model (none listed: start the service with --controlnet-dir DIR)")
    image = values.get(api_name(i, "image"))
    if image is None and not takes_image:
        raise InputError(f"{where}: upload a control image")
    numbers = {name: _number(values, i, name) for name in
               ("processor_res", "threshold_a", "threshold_b", "weight", "guidance_start", "guidance_end")}
    start, end = numbers["guidance_start"] or 0.0, 1.0 if numbers["guidance_end"] is None else numbers["guidance_end"]
    if start >= end:
        raise InputError(f"{where}: the starting control step ({start:g}) must be below the ending one ({end:g})")
    try:
        return control_unit(str(model), image, preprocessor=catalog.preprocessor_name(
            values.get(api_name(i, "preprocessor")) or ""), control_mode=values.get(api_name(i, "control_mode")),
            resize_mode=values.get(api_name(i, "resize_mode")),
            pixel_perfect=bool(values.get(api_name(i, "pixel_perfect"))), **numbers)
    except ValueError as err:  # an API caller's unknown label
        raise InputError(f"{where}: {err}") from None


def add_units(request, values: dict, takes_image: bool, count: int) -> None:
    """The tab's enabled units into its request (params.control)."""
    for i in range(count):
        unit = unit_of(values, i, takes_image)
        if unit is not None:
            request.params.control.append(unit)


# -- events ----------------------------------------------------------------------------------------------

def detect(backend: ModeBackend, image, preprocessor, processor_res, threshold_a, threshold_b,
           input_image=None) -> Image.Image:
    """💥: the detected map of the unit's image (at its own size); without one, of the tab's input image
    (`input_image`: a file path, or the Inpainting editor's value), as a generation would use it."""
    if image is None and isinstance(input_image, dict):
        input_image = input_image.get("background")
    image = image if image is not None else input_image
    if image is None:
        raise gr.Error("Upload a control image first.", print_exception=False)
    unit = control_unit(image=image, preprocessor=catalog.preprocessor_name(preprocessor or ""),
                        processor_res=processor_res, threshold_a=threshold_a, threshold_b=threshold_b)
    try:
        data = backend.preprocess(unit).data
    except GenerationError as err:
        raise gr.Error(str(err), title="ControlNet preview", print_exception=False) from None
    return Image.open(io.BytesIO(data))


def wire(demo, backend: ModeBackend, section: ControlNetSection, input_image=None) -> None:
    """Preview buttons, sliders following the preprocessor, and choices refreshed on each page load.
    `input_image`: the tab's image input (None: txt2img), previewed for a unit without an image."""
    extra = [input_image] if input_image is not None else []
    for unit in section.units:
        f = unit.fields
        sliders = [f[name] for name in catalog.PARAM_FIELDS]
        unit.preview.click(lambda *args: detect(backend, *args), [f["image"], f["preprocessor"], *sliders, *extra],
                           unit.detected, api_visibility="private")
        # .input, not .change: a send (recall_updates) sets the sliders itself, to the values recorded
        f["preprocessor"].input(lambda name: slider_updates(backend.info(), name), f["preprocessor"], sliders,
                                api_visibility="private")

    def refresh():
        info = backend.info()
        models = model_choices(info)
        updates = [gr.update(visible=not models)]
        for _unit in section.units:
            updates += [gr.update(choices=list(catalog.preprocessors(info))), gr.update(choices=models)]
        return updates

    outputs = [section.hint] + [c for u in section.units for c in (u.fields["preprocessor"], u.fields["model"])]
    demo.load(refresh, None, outputs, api_visibility="private")


# -- "Send to": the units infotext records -----------------------------------------------------------------

RECALLED = ("enabled", "preprocessor", "processor_res", "threshold_a", "threshold_b", "model", "weight",
            "guidance_start", "guidance_end", "control_mode", "resize_mode", "pixel_perfect")


def recall_targets(section: ControlNetSection | None) -> list:
    """The components a send fills, in the order of recall_updates."""
    return [] if section is None else [u.fields[name] for u in section.units for name in RECALLED]


def recall_updates(section: ControlNetSection | None, params, info: pb.ServiceInfo | None) -> tuple[list, list]:
    """(updates for recall_targets, warnings): each recorded unit's settings into its unit, enabled (its
    control image is not in the PNG: a warning says so); the other units disabled. `params`: the client's
    Parameters (None: nothing changes)."""
    if section is None:
        return [], []
    if params is None:
        return [gr.update() for _ in recall_targets(section)], []
    out, warnings = [], []
    units = {u.index: u for u in section.units}
    for index in sorted(set(params.controlnet) - set(units)):
        warnings.append(f"ControlNet {index} is left out: this tab has {len(units)} units")
    for index, unit in units.items():
        entry = params.controlnet.get(index)
        if entry is None:
            out += [gr.update(value=False)] + [gr.update() for _ in RECALLED[1:]]
            continue
        model = catalog.find_model(info, f"{entry.model} [{entry.model_hash}]" if entry.model_hash
                                   else entry.model) if info is not None else None
        warnings.append(f"ControlNet Unit {index}: its control image is not in the PNG: upload it"
                        + ("" if model else f"; model {entry.model!r} is not offered by the service"))
        values = {"enabled": True, "preprocessor": entry.module, "processor_res": entry.processor_res,
                  "threshold_a": entry.threshold_a, "threshold_b": entry.threshold_b, "model": model,
                  "weight": entry.weight, "guidance_start": entry.guidance_start, "guidance_end": entry.guidance_end,
                  "control_mode": entry.control_mode, "resize_mode": entry.resize_mode,
                  "pixel_perfect": entry.pixel_perfect}
        sliders = dict(zip(catalog.PARAM_FIELDS, slider_updates(info or pb.ServiceInfo(), entry.module)))
        for name in RECALLED:
            update = dict(sliders.get(name, gr.update()))
            if values[name] is not None:
                update["value"] = values[name]
            out.append(update)
    return out, warnings
