"""The PNG Info tab: an image's parameters (ours or AUTOMATIC1111's), read and sent back to a tab."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from services.client.infotext import NoParameters, Parameters, parse_parameters, read_infotext, read_parameters

from .tabs import readable_only


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
        return text, {"error": str(err)}  # what text there is still shows
    return text, params.fields()


def parameters_of(path: str | Path | None) -> Parameters | None:
    """The parameters of an image file, or None (nothing to send but the image)."""
    if path is None:
        return None
    try:
        return read_parameters(Path(path).read_bytes())
    except NoParameters:
        return None


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
                readable_only(image, "PNG Info: the image")
            with gr.Column():
                view = InfoView.build("png-info")
                with gr.Row():
                    send = {m.name: gr.Button(f"Send to {m.label}", size="sm", elem_id=f"png-info-to-{m.name}")
                            for m in MODES.values()}
    return image, view, send
