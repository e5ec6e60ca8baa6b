"""The PNG Info tab: an image's parameters (ours or AUTOMATIC1111's), read and sent back to a tab."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from services.client.infotext import (MAX_INFOTEXT, NoParameters, Parameters, parse_parameters, read_infotext,
                                      read_parameters)

from .tabs import READABLE, log, readable_only


@dataclass
class InfoView:
    """Where a picked image's parameters show (PNG Info and History): the infotext and its parsed fields."""

    infotext: object
    fields: object

    @classmethod
    def build(cls, prefix: str) -> "InfoView":
        return cls(gr.Textbox(label="Parameters (infotext)", lines=5, interactive=False, elem_id=f"{prefix}-text"),
                   gr.JSON(label="Parsed fields", elem_id=f"{prefix}-fields"))


def describe(path: str | Path | None) -> tuple[str, dict]:
    """(infotext, parsed fields) of an image file; a file without parameters gives ("", {"error": ...})."""
    if path is None:
        return "", {}
    data = Path(path).read_bytes()
    text = ""
    try:
        text = read_infotext(data) or ""
        params = parse_parameters(text) if text else read_parameters(data)
    except NoParameters as err:
        gr.Warning(f"PNG Info: {err}.")
        return text[:MAX_INFOTEXT], {"error": str(err)}  # what text there is still shows (what is read of it)
    return text, params.fields()


def parameters_of(path: str | Path | None) -> Parameters | None:
    """The parameters of an image file, or None (nothing to send but the image)."""
    if path is None:
        return None
    try:
        return read_parameters(Path(path).read_bytes())
    except NoParameters:
        return None


def file_only(component, what: str):
    """`component` (a type="filepath" image input whose file goes on as it is), checked as the infotext
    reader reads it rather than opened by Gradio with Pillow, which refuses a whole PNG for one text
    chunk that inflates past 1 MiB (a ComfyUI workflow). Not an image: a plain message naming `what`."""
    decode = readable_only(component, what).preprocess  # what is not a file (a data: URL) is Gradio's

    def preprocess(payload):
        path = getattr(payload, "path", None)
        if path is None or (getattr(payload, "url", None) or "").startswith("data:"):
            return decode(payload)
        try:
            read_infotext(Path(path).read_bytes())
        except (NoParameters, OSError) as err:
            log.info("%s: upload refused: %s", what, err)
            raise gr.Error(f"{what} is not a readable image ({READABLE}).", print_exception=False) from None
        return str(path)

    component.preprocess = preprocess  # this instance only; Gradio calls block.preprocess
    return component


def wire_png_info(image, view: InfoView) -> None:
    """The tab's events: an uploaded image is read once (its change event fires twice when one image
    replaces another: each warning showed twice); clearing the image clears what it showed."""
    outputs = [view.infotext, view.fields]
    image.upload(describe, image, outputs, api_name="png_info")
    image.clear(lambda: ("", {}), None, outputs, api_visibility="private")


def build_png_info() -> tuple[object, InfoView, dict]:
    """Lay out the tab (inside an open gr.Tabs); returns its image input, its view and its send buttons."""
    from imagegen.v1.contract import MODES

    with gr.Tab("PNG Info", id="png_info", elem_id="tab-png-info"):
        with gr.Row():
            with gr.Column():
                # type="filepath", image_mode=None: the file's own bytes, metadata included (a decoded
                # image would have lost them).
                image = gr.Image(type="filepath", image_mode=None, label="Image (PNG, JPEG or WEBP)",
                                 sources=["upload", "clipboard"], height=360, elem_id="png-info-image")
                file_only(image, "PNG Info: the image")
            with gr.Column():
                view = InfoView.build("png-info")
                with gr.Row():
                    send = {m.name: gr.Button(f"Send to {m.label}", size="sm", elem_id=f"png-info-to-{m.name}")
                            for m in MODES.values()}
    return image, view, send
