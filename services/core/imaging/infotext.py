"""AUTOMATIC1111-style infotext: the `parameters` text many Stable Diffusion tools read and write.

    a red fox
    Negative prompt: blurry
    Steps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 7, Size: 512x512, Model: tiny

Written here; read back by services/client/infotext.py (the gateway and the CLI read it; the client
cannot import the core).
"""

from __future__ import annotations

import json

_NEGATIVE = "Negative prompt: "


def _value(value) -> str:
    text = str(value)
    if any(c in text for c in ',:"\n'):
        return json.dumps(text)
    return text


def format_infotext(prompt: str, negative_prompt: str, params: dict) -> str:
    lines = [prompt]
    if negative_prompt:
        lines.append(_NEGATIVE + negative_prompt)
    lines.append(", ".join(f"{key}: {_value(val)}" for key, val in params.items()))
    return "\n".join(lines)
