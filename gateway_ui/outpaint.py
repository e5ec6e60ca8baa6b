"""The Inpainting tab's Outpaint controls: extend the canvas by some sides and paint the new area."""

from __future__ import annotations

import gradio as gr

from imagegen.v1.contract import OUTPAINT_FILLS, OUTPAINT_SIDES

from .masks import InputError

MOST = 512  # pixels per side the sliders offer (the service bounds the canvas by its own limits)
FILL_CHOICES = [("Edge colours", "edge"), ("Noise", "noise"), ("Mean colour", "mean")]


def controls() -> dict:
    """API name -> component: a pixel slider per side (0 = not that side) and the new area's fill."""
    with gr.Accordion("Outpaint (extend the canvas; no mask needed)", open=False, elem_id="inpaint-outpaint"):
        with gr.Row():
            sliders = {f"outpaint_{side}": gr.Slider(0, MOST, value=0, step=8, label=f"Pixels {side}",
                                                     elem_id=f"inpaint-outpaint-{side}")
                       for side in OUTPAINT_SIDES}
        fill = gr.Radio(FILL_CHOICES, value="edge", label="New area starts as", elem_id="inpaint-outpaint-fill")
    return {**sliders, "outpaint_fill": fill}


def sides(values: dict) -> dict | None:
    """make_request's `outpaint` from the tab's values; None when no side is extended (or the caller
    predates the controls)."""
    chosen = {}
    for side in OUTPAINT_SIDES:
        value = values.get(f"outpaint_{side}") or 0
        if not isinstance(value, (int, float)) or value < 0 or value % 8:
            raise InputError(f"outpaint {side} must be a multiple of 8 pixels, got {str(value)[:20]}")
        chosen[side] = int(value)
    if not any(chosen.values()):
        return None
    fill = values.get("outpaint_fill") or "edge"
    if fill not in OUTPAINT_FILLS:
        raise InputError(f"outpaint fill {str(fill)[:20]!r} is not one of {', '.join(OUTPAINT_FILLS)}")
    return {**chosen, "fill": fill}
