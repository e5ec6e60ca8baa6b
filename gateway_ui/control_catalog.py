"""What a service offers for ControlNet, as the tab and the A1111 API name it: its ControlNets by title
("name [hash]", as sd-webui-controlnet lists them) and its preprocessors with their parameters (GetInfo's
ServiceInfo.controlnets and .preprocessors). Plain data, read from one GetInfo; no Gradio, no HTTP."""

from __future__ import annotations

import re

from imagegen.v1 import imagegen_pb2 as pb

NONE = "none"  # the preprocessor every service has: the image is the map
PARAM_FIELDS = ("processor_res", "threshold_a", "threshold_b")  # in the extension's slider order
# sd-webui-controlnet's UI names of the preprocessors whose name differs (its preprocessor_aliases); its
# API takes either.
ALIASES = {"invert": "invert (from white bg & black line)",
           "lineart_standard": "lineart_standard (from white bg & black line)"}
_BY_ALIAS = {alias: name for name, alias in ALIASES.items()}
_TITLE = re.compile(r"^(.*?)\s*\[([0-9A-Fa-f]+)\]$")


def model_title(controlnet: pb.ControlNetInfo) -> str:
    """A ControlNet as the extension lists it: "name [hash]", or the name while it is not hashed."""
    return f"{controlnet.name} [{controlnet.hash}]" if controlnet.hash else controlnet.name


def find_model(info: pb.ServiceInfo, text: str) -> str | None:
    """The ControlNet name for `text` ("name [hash]", or a name, as the extension takes either): by name,
    else by the hash; None when the service has none such."""
    match = _TITLE.match(text.strip())
    name, digest = (match[1], match[2].lower()) if match else (text.strip(), "")
    for controlnet in info.controlnets:
        if controlnet.name == name:
            return controlnet.name
    for controlnet in info.controlnets:
        if digest and controlnet.hash.lower() == digest:
            return controlnet.name
    return None


def preprocessor_name(text: str) -> str:
    """A preprocessor by its name or the extension's UI alias -> its name ("" is none)."""
    text = (text or "").strip()
    return _BY_ALIAS.get(text, text) or NONE


def preprocessors(info: pb.ServiceInfo) -> dict[str, dict[str, pb.PreprocessorParam]]:
    """name -> {field: its parameter}, "none" first (always there, even from a service that lists none)."""
    found = {NONE: {}}
    for pre in info.preprocessors:
        found[pre.name] = {param.field: param for param in pre.params}
    return found


def sliders(params: dict[str, pb.PreprocessorParam]) -> list:
    """The extension's module_detail sliders: resolution, threshold a, threshold b at fixed places, None
    where a preprocessor lacks one before one it has."""
    out = [None if field not in params else {
        "name": params[field].label, "value": params[field].default_value, "min": params[field].min,
        "max": params[field].max, "step": params[field].step} for field in PARAM_FIELDS]
    while out and out[-1] is None:
        out.pop()
    return out
