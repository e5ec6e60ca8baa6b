"""The signature Gradio reads off a generation function: its API parameters by name, then progress and
the browser request (not API parameters: Interrupt and closing the page use the session)."""

from __future__ import annotations

import inspect
from typing import Callable

import gradio as gr


def named_endpoint(fn: Callable, names: list[str], name: str) -> Callable:
    """`fn(*values, progress, request)` with `names` as its parameters (each may be left out: None)."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    parameters = [inspect.Parameter(n, kind, default=None) for n in names]
    parameters.append(inspect.Parameter("progress", kind, default=gr.Progress()))
    parameters.append(inspect.Parameter("request", kind, default=None, annotation=gr.Request))
    fn.__signature__ = inspect.Signature(parameters)
    fn.__annotations__ = {"request": gr.Request}
    fn.__name__ = name
    return fn
