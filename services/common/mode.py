"""What makes a mode a mode: the few functions each of txt2img, img2img and inpaint provides."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Mode:
    name: str  # "txt2img"
    service: str  # the proto service name, "Txt2Img"
    request_type: type
    # request, ServiceConfig -> GenerationSpec; raises InvalidArgument. No model work.
    parse: Callable[[Any, Any], Any]
    # pipe, GenerationSpec, generators (one per seed), step callback -> list of PIL images
    run: Callable[[Any, Any, list, Callable], list]
    # ServiceConfig -> a small request run once before reporting SERVING
    warmup_request: Callable[[Any], Any]
    add_servicer: Callable[[Any, Any], None]
    stub: type

    @property
    def full_service_name(self) -> str:
        return f"imagegen.v1.{self.service}"


def get_mode(name: str) -> Mode:
    return importlib.import_module(f"services.{name}.mode").MODE


def prompts(spec) -> dict:
    """The prompt arguments every diffusers pipeline takes, one entry per image."""
    count = len(spec.seeds)
    return {"prompt": [spec.prompt] * count, "negative_prompt": [spec.negative_prompt] * count}
