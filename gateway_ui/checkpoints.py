"""A tab's checkpoint dropdown: the models its service offers (GetInfo's `models`), the default chosen.

Choices are labelled as A1111 labels them ("name [hash]"; the hash comes once the service has computed
it) and their value is the name a request sends in GenerationParams.model. Models the mode cannot use
(an inpainting UNet for txt2img) are left out. The service remains the judge of a name: the dropdown
takes one it does not list (an API caller's, or one added since the page loaded) and the service's
INVALID_ARGUMENT naming params.model says what is wrong with it.
"""

from __future__ import annotations

import gradio as gr

from imagegen.v1 import imagegen_pb2 as pb
from services.client.infotext import Parameters
from services.client.replay import model_to_send

# GetInfo's model families, as the status line names them.
FAMILY_LABELS = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}


def usable(info: pb.ServiceInfo) -> list[pb.ModelInfo]:
    return [model for model in info.models if not model.unusable]


def label(model: pb.ModelInfo) -> str:
    return f"{model.name} [{model.hash}]" if model.hash else model.name


def choices(info: pb.ServiceInfo) -> list[tuple[str, str]]:
    return [(label(model), model.name) for model in usable(info)]


def default_name(info: pb.ServiceInfo) -> str | None:
    """The model a request naming none gets; None when the service lists none (unreachable, or older)."""
    return next((model.name for model in info.models if model.is_default), None)


def find(info: pb.ServiceInfo, name: str | None) -> pb.ModelInfo | None:
    """The listed model called `name` ("" or None: the default)."""
    name = name or default_name(info)
    return next((model for model in info.models if model.name == name), None)


def kind_label(family: str, inpaint: bool) -> str:
    """ "SD 1.x model", "SDXL inpainting model"; "" for a family nobody named."""
    known = FAMILY_LABELS.get(family)
    return f"{known} {'inpainting model' if inpaint else 'model'}" if known else ""


def describe(info: pb.ServiceInfo, name: str | None) -> str:
    """The chosen model for the status line: "beta (SD 1.x model)". A service that lists no models
    (older ones) gives its family only: its configured model may be a path on its machine."""
    model = find(info, name)
    if model is None:
        if name and info.models:
            return f"{name}: not offered by the service (🔄 refreshes the list)"
        return kind_label(info.model_family, info.inpaint_model)
    family, inpaint = model.family, model.inpaint
    if not family and model.is_default:  # a single --model is described once loaded: GetInfo's fields
        family, inpaint = info.model_family, info.inpaint_model
    kind = kind_label(family, inpaint)
    return f"{model.name} ({kind})" if kind else model.name


def picker(mode: str, info: pb.ServiceInfo):
    """(the dropdown, its 🔄 button), laid out in a row; the service's default chosen."""
    with gr.Row(equal_height=True):
        dropdown = gr.Dropdown(choices(info), value=default_name(info), label="Stable Diffusion checkpoint",
                               allow_custom_value=True, interactive=True, scale=8, elem_id=f"{mode}-model")
        refresh = gr.Button("🔄", size="sm", min_width=40, scale=1, elem_id=f"{mode}-model-refresh")
    return dropdown, refresh


def refreshed(info: pb.ServiceInfo, current: str | None = None):
    """The dropdown's update from a fresh GetInfo: its choices, and the current choice while the service
    still offers it, else the default (None: the default, as on a page load)."""
    names = [name for _label, name in choices(info)]
    return gr.update(choices=choices(info), value=current if current in names else default_name(info))


def recalled(params: Parameters, info: pb.ServiceInfo) -> tuple[object, list[str]]:
    """(the dropdown's update, warnings) for an image's recorded `Model hash` / `Model`: the model of that
    hash, else of that name (replay's choice, among the usable ones); neither: the default, with a
    warning. Nothing recorded: the dropdown is left as it is."""
    if not params.model and not params.model_hash:
        return gr.update(), []
    offered = pb.ServiceInfo()
    offered.CopyFrom(info)
    del offered.models[:]
    offered.models.extend(usable(info))
    name, warnings = model_to_send(params, offered)
    return gr.update(choices=choices(info), value=name or default_name(info)), warnings
