"""Parameters read back from an image (PNG Info, History) filling a tab's fields: "Send to <tab>"."""

from __future__ import annotations

import gradio as gr

from imagegen.v1 import imagegen_pb2 as pb
from services.client.infotext import RECALLABLE, Parameters, prompt_lora_names

from . import checkpoints, controlnet, hires
from .tabs import MODEL_DEFAULT, Tab

# Parameters attribute -> the tab field (API name) it fills, from the client's table of recallable fields.
# A field a tab does not have is skipped.
# LoRAs need no field: their <lora:name:weight> tags are in the prompt (A1111's infotext and ours).
FIELDS = {field.name: field.tab_input for field in RECALLABLE if field.tab_input}


def filled(tab: Tab) -> list[str]:
    """The tab's inputs a send fills, in order: its recallable fields, then its Hires. fix controls (filled
    from the one recallable `hires`, gateway_ui/hires.py)."""
    return [name for name in (*FIELDS.values(), *hires.HIRES_INPUTS) if name in tab.inputs]


def targets(tab: Tab, tab_row) -> list:
    """The components a send to `tab` fills, in the order of `updates`: its fields, its checkpoint, its
    styles, its image input (image modes), its ControlNet units, and the tab row (to open the tab)."""
    fields = [tab.inputs[name] for name in filled(tab)]
    image = [tab.image_target] if tab.image_target is not None else []
    return fields + [tab.model, tab.styles] + image + controlnet.recall_targets(tab.controlnet) + [tab_row]


def values_for(tab: Tab, params: Parameters) -> tuple[dict, list[str]]:
    """(field name -> value for what the parameters record, warnings in words)."""
    values, warnings = {}, []
    for attribute, name in FIELDS.items():
        if name not in tab.inputs:
            continue
        value = getattr(params, attribute)
        if attribute == "scheduler" and value is None and params.sampler is not None:
            value = MODEL_DEFAULT
            warnings.append(f"unknown sampler {params.sampler!r}: the model's default is chosen instead")
        if value is None or value == {}:
            continue  # not recorded: the field keeps what it has
        values[name] = value
    second, hires_warnings = hires.recalled(params.hires, {n: tab.inputs[n] for n in hires.HIRES_INPUTS
                                                          if n in tab.inputs})
    values.update(second)
    warnings += hires_warnings
    untagged = [name for name in params.loras if name not in prompt_lora_names(params)]
    if untagged:
        warnings.append(f"LoRAs recorded without a <lora:...> tag in the prompt are left out: {', '.join(untagged)}")
    warnings += [p for p in params.problems if not p.startswith("unknown sampler")]
    return values, warnings


def updates(tab: Tab, params: Parameters | None, image=None, info: pb.ServiceInfo | None = None) -> list:
    """The updates of `targets(tab, ...)`: fields from `params` (None: left as they are), the checkpoint
    the parameters record, by hash then name, among those of `info` (the tab's service's GetInfo), the
    image (image modes; None: left as it is), and the tab opened. Warnings show as toasts."""
    values, warnings = values_for(tab, params) if params is not None else ({}, [])
    model, model_warnings = (checkpoints.recalled(params, info) if params is not None and info is not None
                             else (gr.update(), []))
    units, unit_warnings = controlnet.recall_updates(tab.controlnet, params, info)
    for warning in warnings + model_warnings + unit_warnings:
        gr.Warning(f"{tab.spec.contract.label}: {warning}")
    out = [gr.update(value=values[name]) if name in values else gr.update() for name in filled(tab)]
    out.append(model)
    # An infotext records the prompts with their styles applied: the picked styles are cleared, or they
    # would apply twice. Nothing recorded: left as they are.
    out.append(gr.update(value=[]) if params is not None else gr.update())
    if tab.image_target is not None:
        out.append(gr.update(value=image) if image is not None else gr.update())
    out += units
    out.append(gr.Tabs(selected=tab.mode))
    return out
