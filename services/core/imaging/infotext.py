"""AUTOMATIC1111-style infotext: the `parameters` text many Stable Diffusion tools read and write.

    a red fox
    Negative prompt: blurry
    Steps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 7, Size: 512x512, Model: tiny
"""

from __future__ import annotations

import json
import re

_NEGATIVE = "Negative prompt: "
# One "Key: value" pair; a value is a quoted JSON string or runs to the next comma.
_PAIR = re.compile(r'\s*([\w ]+):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


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


def parse_infotext(text: str) -> dict:
    """Parse infotext back into prompt, negative_prompt and a dict of the parameters line."""
    lines = text.strip("\n").split("\n")
    params: dict[str, str] = {}
    last = lines[-1] if lines else ""
    pairs = _PAIR.findall(last)
    if len(pairs) >= 3:
        lines = lines[:-1]
        for key, val in pairs:
            params[key.strip()] = json.loads(val) if val.startswith('"') else val.strip()
    prompt_lines, negative_lines, in_negative = [], [], False
    for line in lines:
        if line.startswith(_NEGATIVE) and not in_negative:
            in_negative = True
            line = line[len(_NEGATIVE):]
        (negative_lines if in_negative else prompt_lines).append(line)
    return {
        "prompt": "\n".join(prompt_lines),
        "negative_prompt": "\n".join(negative_lines),
        "params": params,
    }
