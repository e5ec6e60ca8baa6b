"""The command line's hires fix (txt2img): `--hires` and its `--hires-*` settings -> make_request's `hires`."""

from __future__ import annotations

import argparse

from imagegen.v1.contract import DEFAULT_HIRES_SCALE, DEFAULT_HIRES_STRENGTH, MAX_HIRES_SCALE
from imagegen.v1.infotext import parse_size

from .requests import hires_message


def _upscaler(text: str) -> str:
    try:
        hires_message({"upscaler": text})  # a "Latent ..." name must be one of the latent modes
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def _size(text: str) -> tuple[int, int]:
    size = parse_size(text)
    if size is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT (one side 0 keeps the aspect)")
    return size


_size.__name__ = "size"
_upscaler.__name__ = "upscaler"


def add_hires_args(p: argparse.ArgumentParser, whole) -> None:
    """The txt2img parser's hires options (`whole(least, most)`: the CLI's whole-number type; the service
    checks the ranges of the others, naming hires.<field>)."""
    g = p.add_argument_group("hires fix", "a second pass at a larger size (AUTOMATIC1111's Hires. fix)")
    g.add_argument("--hires", action="store_true", help="upscale the first pass's image and denoise it again")
    g.add_argument("--hires-scale", type=float, default=None,
                   help=f"1..{MAX_HIRES_SCALE:g} (default {DEFAULT_HIRES_SCALE:g})")
    g.add_argument("--hires-resize", type=_size, default=None, metavar="WxH",
                   help="a target size instead of --hires-scale (one side 0 keeps the aspect)")
    g.add_argument("--hires-upscaler", type=_upscaler, default="",
                   help='"Latent" (default), "Latent (bicubic)", ..., "Lanczos", "Nearest", or a model upscaler')
    g.add_argument("--hires-steps", type=whole(0, 2**32 - 1), default=0, help="0 (default): --steps")
    g.add_argument("--hires-strength", type=float, default=None,
                   help=f"denoising strength 0..1 (default {DEFAULT_HIRES_STRENGTH:g})")
    g.add_argument("--hires-scheduler", default="", help="the second pass's sampler (default: the first's)")
    g.add_argument("--hires-schedule-type", default="", help="with --hires-scheduler")
    g.add_argument("--hires-prompt", default="", help="the second pass's prompt (default: --prompt)")
    g.add_argument("--hires-negative-prompt", default="", help="default: --negative-prompt")


def hires_of(args) -> dict | None:
    """make_request's `hires` from parsed arguments; None without --hires (or for another mode)."""
    if not getattr(args, "hires", False):
        return None
    width, height = args.hires_resize or (0, 0)
    return {"scale": args.hires_scale, "resize_width": width, "resize_height": height,
            "upscaler": args.hires_upscaler, "steps": args.hires_steps, "denoising_strength": args.hires_strength,
            "scheduler": args.hires_scheduler, "schedule_type": args.hires_schedule_type,
            "prompt": args.hires_prompt, "negative_prompt": args.hires_negative_prompt}
