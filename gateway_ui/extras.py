"""The Extras tab, as AUTOMATIC1111's "Single Image": an image made bigger by a named upscaler through the
img2img service's Upscale, by a factor ("Scale by") or to a size ("Scale to", optionally cropped to fit),
with a second upscaler blended over the first. The image goes as the uploaded file's own bytes (the
service decodes and checks it); the result is the service's file, kept in the outputs folder ("extras").
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import FORMAT_BY_MIME, RESIZERS, UPSCALE_MODE

from .backend import GenerationError, internal_error_message, new_error_id
from .endpoints import named_endpoint
from .inputs import image_size
from .outputs import EXTRAS, SaveError
from .tabs import checked_at_upload

log = logging.getLogger("gateway")

RESIZE_MODES = ("Scale by", "Scale to")  # A1111's two tabs; their index is its API's resize_mode
LABEL = "Extras"


@dataclass
class ExtrasTab:
    tab: gr.Tab
    inputs: dict  # name -> component, in the endpoint's parameter order
    button: gr.Button
    result: gr.Image
    info: gr.Textbox
    upscalers: list  # the two upscaler dropdowns (refreshed on page load)


def upscaler_names(info: pb.ServiceInfo) -> list[str]:
    """The usable upscalers GetInfo lists (A1111's resizers while the service cannot be reached)."""
    return [u.name for u in info.upscalers if not u.unusable] or list(RESIZERS)


def first_choice(info: pb.ServiceInfo) -> str:
    """Upscaler 1's first value: the first model the service lists, else Lanczos ("None" upscales nothing)."""
    return next((u.name for u in info.upscalers if u.architecture and not u.unusable), "Lanczos")


def build_extras(info: pb.ServiceInfo) -> ExtrasTab:
    """The tab's components, laid out as A1111's (inside a gr.Tabs)."""
    names = upscaler_names(info)
    limits = info.limits
    with gr.Tab(LABEL, id="extras") as tab:
        with gr.Row():
            with gr.Column():
                image = gr.Image(type="filepath", image_mode=None, label="Source", sources=["upload", "clipboard"],
                                 height=360, elem_id="extras-image")
                checked_at_upload(image, f"{LABEL}: the source image")
                resize_mode = gr.Radio(list(RESIZE_MODES), value=RESIZE_MODES[0], label="Resize mode")
                scale = gr.Slider(1.0, 8.0, value=4.0, step=0.05, label="Resize")
                with gr.Row():
                    width = gr.Slider(64, limits.max_width, value=512, step=8, label="Width")
                    height = gr.Slider(64, limits.max_height, value=512, step=8, label="Height")
                crop = gr.Checkbox(value=True, label="Crop to fit")
                # Custom values pass: a name the service no longer lists is its error, naming the field.
                upscaler_1 = gr.Dropdown(names, value=first_choice(info), label="Upscaler 1",
                                         allow_custom_value=True)
                upscaler_2 = gr.Dropdown(names, value=names[0], label="Upscaler 2", allow_custom_value=True)
                visibility = gr.Slider(0.0, 1.0, value=0.0, step=0.001, label="Upscaler 2 visibility")
                button = gr.Button("Generate", variant="primary", elem_id="extras-generate")
            with gr.Column():
                result = gr.Image(type="filepath", label="Result", interactive=False, format="png",
                                  elem_id="extras-result")
                text = gr.Textbox(label="Info", interactive=False, lines=2, elem_id="extras-info")
    inputs = {"image": image, "resize_mode": resize_mode, "upscaling_resize": scale, "upscaling_resize_w": width,
              "upscaling_resize_h": height, "upscaling_crop": crop, "upscaler_1": upscaler_1,
              "upscaler_2": upscaler_2, "extras_upscaler_2_visibility": visibility}
    return ExtrasTab(tab, inputs, button, result, text, [upscaler_1, upscaler_2])


def upscale_request(data: bytes, values: dict) -> pb.UpscaleRequest:
    """A1111's extras fields (its API's names) as an UpscaleRequest. Upscaler 1 "None" leaves the image as
    it is (A1111 skips the upscale, and upscaler 2 with it). "Scale to" without crop is A1111's scale by the
    larger of the two ratios; with crop, the size exactly (cover, then the centre)."""
    if (values.get("upscaler_1") or "None") == "None":
        width, height = source_size(data)
        return pb.UpscaleRequest(image=pb.Image(data=data), upscaler="None", width=width, height=height)
    request = pb.UpscaleRequest(image=pb.Image(data=data), upscaler=values["upscaler_1"])
    second, visibility = values.get("upscaler_2") or "None", float(values.get("extras_upscaler_2_visibility") or 0)
    if second != "None" and visibility > 0:
        request.upscaler_2, request.upscaler_2_visibility = second, visibility
    mode = values.get("resize_mode", 0)
    mode = RESIZE_MODES.index(mode) if isinstance(mode, str) else int(mode or 0)
    if mode == 1:
        request.width = int(values.get("upscaling_resize_w") or 512)
        request.height = int(values.get("upscaling_resize_h") or 512)
        request.crop = bool(values.get("upscaling_crop", True))
        if not request.crop:
            source = source_size(data)
            request.scale = max(request.width / source[0], request.height / source[1])
            request.ClearField("width"), request.ClearField("height")
    else:
        request.scale = float(values.get("upscaling_resize") or 2)
    return request


def source_size(data: bytes) -> tuple[int, int]:
    """The image's size from its header only (no pixel decoded); (1, 1) when it does not say: the
    service then refuses the bytes, naming the field."""
    return image_size(io.BytesIO(data)) or (1, 1)


def wire_extras(gateway, extras: ExtrasTab, concurrency=None) -> None:
    """The Generate button (API name /extras, A1111's field names) and the dropdowns' refresh on load."""
    names = list(extras.inputs)
    backend = gateway.backends[UPSCALE_MODE]

    def run(*args):
        try:
            return upscale(*args)
        except gr.Error:
            raise
        except Exception:  # noqa: BLE001 - a fault of the gateway itself: an id for the browser, the rest logged
            error_id = new_error_id()
            log.exception("extras: internal error (id %s)", error_id)
            raise gr.Error(internal_error_message(LABEL, error_id), title=f"{LABEL} error",
                           print_exception=False) from None

    def upscale(*args):
        *values, _progress, _request = args
        chosen = dict(zip(names, values))
        path = chosen.pop("image")
        if not path:
            raise gr.Error(f"{LABEL}: choose a source image first.", print_exception=False)
        request = upscale_request(Path(path).read_bytes(), chosen)
        try:
            answer = backend.upscale(request)
        except GenerationError as err:
            raise gr.Error(str(err), title=f"{LABEL} error", print_exception=False) from None
        fmt = FORMAT_BY_MIME.get(answer.image.mime_type)
        kept = gateway._keep("extras", "upscaled", answer.image.data, fmt.extension if fmt else "png")
        try:
            gateway.hub.save(EXTRAS, [answer.image])
        except SaveError as err:  # a warning: the result itself is still shown
            gr.Warning(str(err), title=f"{LABEL}: not saved")
        return kept, answer.image.infotext

    extras.button.click(named_endpoint(run, names, "extras"), list(extras.inputs.values()),
                        [extras.result, extras.info], api_name="extras", concurrency_id="extras",
                        concurrency_limit="default" if concurrency is None else concurrency)

    def refresh():
        choices = upscaler_names(backend.info())
        return [gr.update(choices=choices) for _ in extras.upscalers]

    return refresh
