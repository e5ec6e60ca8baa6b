"""The three tabs, each described once: its own inputs, its own request, together.

A tab's inputs are named in API order; the names are the gateway API's parameter names
(`/img2img(image, prompt, negative_prompt, strength, steps, ...)`), and the tab's request builder
reads the values by those names. Ranges and defaults come from the service's GetInfo.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable

import gradio as gr

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import (IMG2IMG, INPAINT, MAX_CLIP_SKIP, MAX_MASK_BLUR, MAX_ONLY_MASKED_PADDING,
                                  MAX_SEED, MIN_SIZE, SAMPLERS, TXT2IMG, UI_DEFAULT_SAMPLER, ModeContract)
from services.client import make_request

from . import checkpoints, hires, networks, outpaint
from .batch import MAX_BATCH_COUNT
from .controlnet import ControlNetSection, build_controlnet
from .inputs import READABLE, problem, uploaded_paths
from .masks import InputError, editor_image, editor_inputs
from .xyz.ui import build_xyz

MODEL_DEFAULT = "model default"

log = logging.getLogger("gateway")


def up_to(most: int) -> str:
    """A size slider's note: the box clamps a bigger typed value to its maximum, so the limit is shown."""
    return f"up to {most} px (the service's limit; a larger value is set to {most})"


@dataclass
class Controls:
    """The settings every tab has, laid out as A1111's: the everyday ones in view (sampler, schedule type,
    steps, size, batch count and size, CFG, seed with 🎲 and ♻️), the rest under Advanced. Their ranges and
    choices follow GetInfo."""

    fields: dict  # API name -> component, in API order
    sized: bool  # txt2img: width/height >= 64; image modes: 0 keeps the input's size
    appended: dict = field(default_factory=dict)  # API name -> component: added last, after every other input
    random_seed: object = None  # 🎲: the seed to -1 (random)
    reuse_seed: object = None  # ♻️: the seed of the picked result

    @classmethod
    def build(cls, mode: str, info: pb.ServiceInfo, sized: bool, extra: Callable[[], dict],
              late: Callable[[], dict] = dict, appended: Callable[[], dict] = dict) -> "Controls":
        limits, defaults = info.limits, info.defaults
        least = MIN_SIZE if sized else 0
        suffix = "" if sized else " (0 = the input's)"
        with gr.Row():
            choices = sampler_choices(info)
            scheduler = gr.Dropdown(choices, value=default_sampler(choices), label="Sampling method",
                                    elem_id=f"{mode}-scheduler")
            schedule_type = gr.Dropdown(SCHEDULE_CHOICES, value="", label="Schedule type",
                                        elem_id=f"{mode}-schedule-type")
            steps = gr.Slider(1, limits.max_steps, value=defaults.num_inference_steps, step=1,
                              label="Sampling steps", elem_id=f"{mode}-steps")
        with gr.Row():
            width = gr.Slider(least, limits.max_width, value=defaults.width if sized else 0, step=8,
                              label="Width" + suffix, info=up_to(limits.max_width), elem_id=f"{mode}-width")
            height = gr.Slider(least, limits.max_height, value=defaults.height if sized else 0, step=8,
                               label="Height" + suffix, info=up_to(limits.max_height), elem_id=f"{mode}-height")
        with gr.Row():
            # Batch count: requests one after another (gateway_ui/batch.py); batch size: images per request.
            batch_count = gr.Slider(1, MAX_BATCH_COUNT, value=1, step=1, label="Batch count",
                                    elem_id=f"{mode}-batch-count")
            num_images = gr.Slider(1, limits.max_images, value=1, step=1, label="Batch size",
                                   elem_id=f"{mode}-num-images")
        guidance = gr.Slider(0, limits.max_guidance_scale, value=defaults.guidance_scale, step=0.5,
                             label="CFG Scale", elem_id=f"{mode}-guidance")
        with gr.Row(equal_height=True):
            seed = gr.Number(-1, precision=0, label="Seed (-1 = random)", elem_id=f"{mode}-seed", scale=4)
            random_seed = gr.Button("🎲", size="sm", min_width=40, scale=0, elem_id=f"{mode}-random-seed")
            reuse_seed = gr.Button("♻️", size="sm", min_width=40, scale=0, elem_id=f"{mode}-reuse-seed")
        with gr.Accordion("Advanced", open=False):
            with gr.Row():
                clip_skip = gr.Slider(1, info.max_clip_skip or MAX_CLIP_SKIP, value=1, step=1,
                                      label="Clip skip (1 = last layer; SDXL: none)",
                                      elem_id=f"{mode}-clip-skip")
            # Mode controls stay last on the page: moved above, they broke ImageEditor uploads in Chromium.
            mode_fields = extra()  # strength, mask blur (first in the API, last on the page)
            late_fields = late()  # added later: last in the API too, so positional callers keep working
            appended_fields = appended()  # the mode's newest (invert mask): after every other input
        return cls({**mode_fields, "steps": steps, "guidance": guidance, "width": width, "height": height,
                    "seed": seed, "num_images": num_images, "scheduler": scheduler, "clip_skip": clip_skip,
                    **late_fields}, sized,
                   {"schedule_type": schedule_type, "batch_count": batch_count, **appended_fields},
                   random_seed, reuse_seed)

    @property
    def ranged(self) -> list:
        """The components whose ranges and choices GetInfo sets, in the order of `updates`."""
        f = self.fields
        return [f["steps"], f["guidance"], f["width"], f["height"], f["num_images"], f["scheduler"],
                f["clip_skip"]]

    def updates(self, info: pb.ServiceInfo) -> list:
        limits = info.limits
        least = MIN_SIZE if self.sized else 0
        return [
            gr.update(maximum=limits.max_steps),
            gr.update(maximum=limits.max_guidance_scale),
            gr.update(maximum=limits.max_width, minimum=least, info=up_to(limits.max_width)),
            gr.update(maximum=limits.max_height, minimum=least, info=up_to(limits.max_height)),
            gr.update(maximum=limits.max_images),
            gr.update(choices=sampler_choices(info)),
            gr.update(maximum=info.max_clip_skip or MAX_CLIP_SKIP),  # the model's text encoder layers
        ]


# A1111's schedule types ("" = Automatic, the sampler's own); the hires fix's list less its "Use same scheduler".
SCHEDULE_CHOICES = hires.SCHEDULE_CHOICES[1:]


def sampler_choices(info: pb.ServiceInfo) -> list[tuple[str, str]]:
    """The sampler dropdown: A1111's names shown, ours sent (GetInfo's samplers), then the model's own."""
    return [(sampler.label, sampler.name) for sampler in info.samplers] + [(MODEL_DEFAULT, MODEL_DEFAULT)]


def default_sampler(choices: list[tuple[str, str]]) -> str:
    """A1111's default sampler where the service has it (DPM++ 2M, Automatic), else the model's own."""
    offered = (SAMPLERS[UI_DEFAULT_SAMPLER][0], UI_DEFAULT_SAMPLER) in choices
    return UI_DEFAULT_SAMPLER if offered else MODEL_DEFAULT


def readable_only(component, what: str):
    """`component` (an image input), refusing an upload that is not an image with a plain message
    naming the input (`what`).

    Gradio opens every uploaded image before the handler runs, even with type="filepath"; when that
    fails its own message would reach the browser: a temporary file's path and a library's error
    name. The reason is logged here; the browser is told which input to fix."""
    decode = component.preprocess

    def preprocess(payload):
        try:
            return decode(payload)
        except gr.Error:
            raise
        except Exception as err:  # noqa: BLE001 - whatever the decoder says, the upload is not a usable image
            log.info("%s: upload refused: %s: %s", what, type(err).__name__, err)
            raise gr.Error(f"{what} is not a readable image ({READABLE}).", print_exception=False) from None

    component.preprocess = preprocess  # this instance only; Gradio calls block.preprocess
    return component


def checked_at_upload(component, what: str):
    """`component` (an image input of a tab) as readable_only, and an upload that is not an image is
    cleared at once with a warning naming the input, not found out at Generate. Read from the file's
    header (preprocess=False: nothing is decoded); the service checks the size."""
    def check(payload):
        for path in uploaded_paths(payload):
            refused = problem(path, what)
            if refused:
                gr.Warning(refused)
                return None
        return gr.update()

    # No progress overlay: it would hide the editor's canvas while the check runs, and strokes painted
    # then are lost.
    component.upload(check, component, component, preprocess=False, api_visibility="private",
                     show_progress="hidden")
    return readable_only(component, what)


def number(values: dict, name: str, whole: bool = False, least: float = 0, most: float = 2**32 - 1):
    """A number the browser (or an API caller) sent, checked to fit the request message (whole numbers
    are unsigned 32-bit unless told); InputError names the field. The service checks its own ranges."""
    value = values[name]
    try:
        result = float(value or 0)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{name} must be a number, not {str(value)[:40]!r}") from None
    if not math.isfinite(result):
        raise InputError(f"{name} must be a finite number, not {value}")
    if whole and not least <= result <= most:
        raise InputError(f"{name} {value} is outside {least:g}..{most:g}")
    return int(result) if whole else result


def common_request_args(values: dict) -> dict:
    """make_request's keyword arguments from the fields every tab has."""
    scheduler = values["scheduler"]
    own = not scheduler or scheduler == MODEL_DEFAULT
    seed = number(values, "seed", whole=True, least=-1, most=MAX_SEED)
    return {
        "negative_prompt": values["negative_prompt"] or "",
        "steps": number(values, "steps", whole=True),
        "guidance_scale": number(values, "guidance"),
        "width": number(values, "width", whole=True),
        "height": number(values, "height", whole=True),
        "seed": None if seed < 0 else seed,  # -1: random
        "num_images": number(values, "num_images", whole=True),
        "scheduler": "" if own else str(scheduler),
        # A schedule type control ("" = Automatic) where the tab has one; the model's own takes none.
        "schedule_type": "" if own else values.get("schedule_type") or "",
        # Left out (an API caller's None or 0): the service's default, the last layer.
        "clip_skip": number(values, "clip_skip", whole=True) or None if values.get("clip_skip") else None,
        "model": str(values.get("model") or ""),  # left out (None, ""): the service's default
    }


@dataclass
class TabSpec:
    """What makes one tab: its mode, its own inputs and controls, and how its values become a request."""

    contract: ModeContract
    sized: bool
    # Builds the tab's image inputs (in the left column) -> API name -> component; the first takes
    # images sent from other tabs.
    image_inputs: Callable[[], dict]
    # Builds the mode's own Advanced controls -> API name -> component.
    mode_controls: Callable[[pb.ServiceInfo], dict]
    # Values by API name -> the request; InputError names what the person must fix.
    request: Callable[[dict], object]
    # Builds the mode's controls added after the shared ones (last in the API) -> API name -> component.
    late_controls: Callable[[pb.ServiceInfo], dict] = lambda _info: {}
    # Builds the mode's controls added after the checkpoint and styles (last in the API) -> API name -> component.
    newest_controls: Callable[[], dict] = lambda: {}
    # Builds the hires fix's controls (txt2img; gateway_ui/hires.py) -> API name -> component: a group of its
    # own, after every other input in the API.
    hires_controls: Callable[[pb.ServiceInfo], dict] = lambda _info: {}
    # Builds the mode's newest Advanced controls (after its late ones on the page) -> API name -> component:
    # last in the API, after the shared page controls (schedule type, batch count).
    appended_controls: Callable[[], dict] = lambda: {}


def _no_inputs() -> dict:
    return {}


def _no_controls(_info) -> dict:
    return {}


def _strength(mode: str, info: pb.ServiceInfo) -> dict:
    return {"strength": gr.Slider(0.05, 1, value=info.defaults.strength, step=0.05, label="Strength",
                                  elem_id=f"{mode}-strength")}


def txt2img_request(values: dict):
    common = common_request_args(values)
    second = hires.keywords(values, (common["scheduler"], common["schedule_type"]), number)
    return make_request(TXT2IMG.name, values["prompt"] or "", hires=second, **common)


def img2img_inputs() -> dict:
    # type="filepath", image_mode=None: the uploaded file's own bytes go to the service, which decodes
    # them with its limits (and names init_image.data when they are not a usable image).
    image = gr.Image(type="filepath", image_mode=None, label="Input image", sources=["upload", "clipboard"],
                     height=360, elem_id="img2img-input")
    return {"image": checked_at_upload(image, "Img2Img: the input image")}


# The fits in AUTOMATIC1111's words ("Resize mode"); the first is the service's default: resize to the size
# given, keep the input's when none is.
RESIZE_MODES = [("Just resize", ""), ("Crop and resize", "crop"), ("Resize and fill", "fill"),
                ("Just resize (latent upscale)", "latent")]
MASKED_CONTENTS = ["original", "fill", "latent noise", "latent nothing"]


def _resize_mode(mode: str) -> dict:
    return {"fit": gr.Dropdown(RESIZE_MODES, value="", label="Resize mode (to Width x Height)",
                               elem_id=f"{mode}-fit")}


def _fit(values: dict) -> str | None:
    """The fit asked for; "" (or an API caller's None): the service's default."""
    fit = values.get("fit") or None
    if fit is not None and fit not in {value for _label, value in RESIZE_MODES}:
        raise InputError(f"fit {str(fit)[:40]!r} is not one of {', '.join(v for _, v in RESIZE_MODES if v)}")
    return fit


def img2img_request(values: dict):
    if values["image"] is None:
        raise InputError("upload an input image first")
    return make_request(IMG2IMG.name, values["prompt"] or "", image=values["image"],
                        strength=number(values, "strength"), fit=_fit(values), **common_request_args(values))


BRUSH = ("#ffffff", 0.5)  # the inpainting brush: white at half opacity


def inpaint_inputs() -> dict:
    # The editor's layers are read here (they make the mask), so it gives PIL images; an uploaded mask
    # goes to the service as the file's own bytes.
    # A semi-transparent brush (A1111's): the image shows through what is painted; any painted pixel is
    # masked, whatever its alpha (masks.painted_mask).
    editor = gr.ImageEditor(type="pil", label="Image: paint over the part to repaint",
                            brush=gr.Brush(colors=[BRUSH], default_color=BRUSH, color_mode="defaults"),
                            sources=["upload", "clipboard"], elem_id="inpaint-editor")
    mask = gr.Image(type="filepath", image_mode=None, elem_id="inpaint-mask",
                    label="Or upload a mask (white = repaint)")
    return {"editor": checked_at_upload(editor, "Inpainting: the editor's image or a brush layer"),
            "mask": checked_at_upload(mask, "Inpainting: the uploaded mask")}


def inpaint_controls(info: pb.ServiceInfo) -> dict:
    return {**_strength(INPAINT.name, info),
            "mask_blur": gr.Slider(0, MAX_MASK_BLUR, value=info.defaults.mask_blur, step=1, label="Mask blur (px)",
                                   elem_id="inpaint-mask-blur")}


def inpaint_late_controls(info: pb.ServiceInfo) -> dict:
    """A1111's Inpaint area, its padding and Masked content; the resize mode (not used for only masked)."""
    with gr.Row():
        area = gr.Radio([("Whole picture", False), ("Only masked", True)], value=False, label="Inpaint area",
                        elem_id="inpaint-area")
        padding = gr.Slider(0, MAX_ONLY_MASKED_PADDING, value=info.defaults.only_masked_padding or
                            INPAINT.default_only_masked_padding, step=4, label="Only masked padding, pixels",
                            elem_id="inpaint-padding")
    content = gr.Radio(MASKED_CONTENTS, value="original", label="Masked content (below strength 1)",
                       elem_id="inpaint-masked-content")
    return {"only_masked": area, "only_masked_padding": padding, "masked_content": content,
            **_resize_mode(INPAINT.name)}


def inpaint_appended_controls() -> dict:
    """A1111's Mask mode: "Inpaint not masked" repaints all but the mask (InpaintRequest.invert_mask)."""
    return {"invert_mask": gr.Radio([("Inpaint masked", False), ("Inpaint not masked", True)], value=False,
                                    label="Mask mode", elem_id="inpaint-mask-mode")}


def inpaint_request(values: dict):
    extend = outpaint.sides(values)
    # Outpainting makes its own mask (the new area): the editor's image alone.
    image, mask = (editor_image(values["editor"]), None) if extend else editor_inputs(values["editor"],
                                                                                       values.get("mask"))
    content = values.get("masked_content") or "original"
    if content not in MASKED_CONTENTS:
        raise InputError(f"masked_content {str(content)[:40]!r} is not one of {', '.join(MASKED_CONTENTS)}")
    padding = values.get("only_masked_padding")
    return make_request(INPAINT.name, values["prompt"] or "", image=image, mask=mask,
                        strength=number(values, "strength"),
                        mask_blur=number(values, "mask_blur", whole=True),
                        only_masked=bool(values.get("only_masked")), invert_mask=bool(values.get("invert_mask")),
                        only_masked_padding=None if padding is None else number(values, "only_masked_padding",
                                                                                whole=True),
                        masked_content=content, fit=_fit(values), outpaint=extend,
                        **common_request_args(values))


TABS = (
    TabSpec(TXT2IMG, sized=True, image_inputs=_no_inputs, mode_controls=_no_controls, request=txt2img_request,
            hires_controls=hires.controls),
    TabSpec(IMG2IMG, sized=False, image_inputs=img2img_inputs,
            mode_controls=lambda info: _strength(IMG2IMG.name, info), request=img2img_request,
            late_controls=lambda _info: _resize_mode(IMG2IMG.name)),
    TabSpec(INPAINT, sized=False, image_inputs=inpaint_inputs, mode_controls=inpaint_controls,
            request=inpaint_request, late_controls=inpaint_late_controls, newest_controls=outpaint.controls,
            appended_controls=inpaint_appended_controls),
)


@dataclass
class Tab:
    """One built tab: its components by API name, its outputs, and where sent images land."""

    spec: TabSpec
    inputs: dict  # API name -> component, in API order
    controls: Controls
    status: object
    outputs: list  # gallery, seeds, infotext
    send_buttons: dict = field(default_factory=dict)  # target mode -> button
    selected: object = None  # gr.State: the gallery index picked
    interrupt: object = None  # the Interrupt button: stops the running generation
    networks: object = None  # the LoRA and embedding cards (networks.Networks); they follow GetInfo
    model_refresh: object = None  # 🔄 beside the checkpoint dropdown (inputs["model"]): GetInfo again
    xyz: object = None  # the X/Y/Z plot's controls (xyz.ui.XYZControls), where the tab has them
    controlnet: ControlNetSection | None = None  # its units' inputs follow the others but the page's newest
    skip: object = None  # the Skip button: ends the current image of a batch count
    outcome: object = None  # the outcome line: how the last generation ended

    @property
    def styles(self):
        """The prompt styles picker: applied by the gateway (gateway_ui/styles.py) before sending."""
        return self.inputs["styles"]

    @property
    def model(self):
        """The checkpoint dropdown: its value is the request's params.model."""
        return self.inputs["model"]

    @property
    def mode(self) -> str:
        return self.spec.contract.name

    @property
    def image_target(self):
        """The component an image sent to this tab goes into (None: the tab takes no image)."""
        return next(iter(self.inputs.values())) if self.spec.contract.takes_image else None


def style_picker(mode: str, names: list[str]):
    """The prompt styles to apply (the gateway's --styles file), several at once, in the order picked.
    Names the list lacks are let through to the gateway's own check, which names them (the file may
    have changed since the page loaded)."""
    return gr.Dropdown(names, value=[], multiselect=True, allow_custom_value=True, elem_id=f"{mode}-styles",
                       label="Styles" if names else "Styles (none: the gateway has no --styles file)")


def build_tab(spec: TabSpec, info: pb.ServiceInfo, image_modes: list[ModeContract],
              style_names: list[str] = ()) -> tuple[Tab, object]:
    """Lay out one tab (inside an open gr.Tabs); returns it and its Generate button."""
    mode = spec.contract.name
    with gr.Tab(spec.contract.label, id=mode, elem_id=f"tab-{mode}"):
        status = gr.Markdown(elem_id=f"{mode}-status")
        with gr.Row():
            with gr.Column():
                images = spec.image_inputs()
                prompt = gr.Textbox(label="Prompt", lines=2, elem_id=f"{mode}-prompt")
                negative = gr.Textbox(label="Negative prompt", lines=1, elem_id=f"{mode}-negative")
                checkpoint, refresh = checkpoints.picker(mode, info)
                styles = style_picker(mode, style_names)
                nets = networks.panel(mode, info, prompt, negative)
                controls = Controls.build(mode, info, spec.sized, lambda: spec.mode_controls(info),
                                          lambda: spec.late_controls(info), spec.appended_controls)
                newest = spec.newest_controls()
                second_pass = spec.hires_controls(info)
                control = build_controlnet(mode, info, spec.contract.takes_image, checked_at_upload)
                with gr.Row():
                    button = gr.Button("Generate", variant="primary", elem_id=f"{mode}-generate", scale=2)
                    skip = gr.Button("Skip", elem_id=f"{mode}-skip")  # the current image of a batch count
                    interrupt = gr.Button("Interrupt", variant="stop", elem_id=f"{mode}-interrupt")
                xyz = build_xyz(mode) if spec.contract is TXT2IMG else None  # wired in app.py (the hub's)
            with gr.Column():
                gallery = gr.Gallery(label="Result", type="filepath", format="png", interactive=False,
                                     elem_id=f"{mode}-gallery", columns=2)
                outcome = gr.Markdown(elem_id=f"{mode}-outcome")  # "Done: ...", "Interrupted: ..."
                seeds = gr.Textbox(label="Seeds", interactive=False, elem_id=f"{mode}-seeds")
                infotext = gr.Textbox(label="Parameters (infotext)", lines=3, interactive=False,
                                      elem_id=f"{mode}-infotext")
                selected = gr.State(0)
                with gr.Row():
                    send = {target.name: gr.Button(f"Send to {target.label}", size="sm",
                                                   elem_id=f"{mode}-to-{target.name}")
                            for target in image_modes}
    # The checkpoint, then the styles, were added last: last in the API too, so positional callers of
    # before keep working.
    inputs = {**images, "prompt": prompt, "negative_prompt": negative, **controls.fields, "model": checkpoint,
              "styles": styles, **newest}
    inputs.update(second_pass)  # the hires fix's group
    inputs.update(control.fields)  # ControlNet: a group of its own, after every other input
    inputs.update(controls.appended)  # the page's schedule type and batch count, then the mode's newest
    tab = Tab(spec, inputs, controls, status, [gallery, seeds, infotext], send, selected, interrupt, nets,
              refresh, xyz, control, skip, outcome)
    return tab, button
