"""The command line: `python -m services.client txt2img|img2img|inpaint|upscale|replay|info|health ...`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import (FIT_MODES, MASKED_CONTENT, MAX_CLIP_SKIP, MAX_MASK_BLUR,
                                  MAX_ONLY_MASKED_PADDING, MAX_SEED, MODE_NAMES, MODES, OUTPUT_FORMATS,
                                  UPSCALE_MODE)

from .client import ImageGenClient
from .control import control_mode_enum, control_resize_enum
from .errors import ServiceError
from .events import Progress, Queued, Result
from .hires_cli import add_hires_args, hires_of
from .infotext import NoParameters, read_parameters
from .replay import ReplayError, check_recorded, replay_request
from .requests import make_request
from .security import ClientSecurity

DESCRIPTION = "Python client and command-line tool for the imagegen.v1 services."
UINT32 = 2**32 - 1

# The suffixes each output format is written under; the first is the one given to other names.
_SUFFIXES = {name: (f".{fmt.extension}",) for name, fmt in OUTPUT_FORMATS.items()}
_SUFFIXES["jpeg"] += (".jpeg",)
_IMAGE_SUFFIXES = {suffix for suffixes in _SUFFIXES.values() for suffix in suffixes}


def whole(least: int, most: int, hint: str = ""):
    """An argparse type: a whole number in least..most, else a one-line usage error (exit code 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not least <= value <= most:
            raise argparse.ArgumentTypeError(f"{value} is outside {least}..{most}{hint}")
        return value

    parse.__name__ = "whole number"  # what argparse calls it in its own messages
    return parse


def seed(text: str) -> int | None:
    """An argparse type: a seed, or None for -1 (random, as in the gateway's tabs and A1111's API)."""
    if text.strip() == "-1":
        return None
    return whole(0, MAX_SEED, " (-1 or leave --seed out for a random seed)")(text)


seed.__name__ = "seed"  # what argparse calls it in its own messages


def positive(text: str) -> float:
    """An argparse type: a number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds above 0")
    return value


def lora_weight(text: str) -> tuple[str, float]:
    """An argparse type: NAME or NAME:WEIGHT (weight 1 when left out), a LoRA and its weight."""
    name, sep, weight = text.rpartition(":") if ":" in text else (text, "", "1")
    try:
        value = float(weight)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: the weight {weight!r} is not a number (NAME:WEIGHT)") from None
    if not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r} names no LoRA (NAME:WEIGHT)")
    return name.strip(), value


lora_weight.__name__ = "LoRA"  # what argparse calls it in its own messages

# --control's keys that are numbers (the rest are words; pixel_perfect true or false).
_CONTROL_NUMBERS = {"processor_res": int, "threshold_a": float, "threshold_b": float, "weight": float,
                    "guidance_start": float, "guidance_end": float}
_CONTROL_WORDS = ("model", "image", "preprocessor", "control_mode", "resize_mode")


def control_spec(text: str) -> dict:
    """An argparse type: a ControlNet unit as KEY=VALUE pairs, comma-separated (control_unit's keywords:
    model=edges,image=edges.png,preprocessor=canny,weight=0.8,control_mode=prompt,pixel_perfect=true)."""
    unit: dict = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in (*_CONTROL_NUMBERS, *_CONTROL_WORDS, "pixel_perfect"):
            keys = ", ".join((*_CONTROL_WORDS, *_CONTROL_NUMBERS, "pixel_perfect"))
            raise argparse.ArgumentTypeError(f"{item!r}: not KEY=VALUE with a key of {keys}")
        if key in _CONTROL_NUMBERS:
            try:
                unit[key] = _CONTROL_NUMBERS[key](value)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{key}={value!r} is not a number") from None
        elif key == "pixel_perfect":
            if value.lower() not in ("true", "false"):
                raise argparse.ArgumentTypeError(f"pixel_perfect={value!r}: true or false")
            unit[key] = value.lower() == "true"
        else:
            unit[key] = Path(value) if key == "image" else value
    try:  # the labels checked now: a usage error, not a failure after the image is read
        for key, check in (("control_mode", control_mode_enum), ("resize_mode", control_resize_enum)):
            if key in unit:
                check(unit[key])
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if not unit.get("model"):
        raise argparse.ArgumentTypeError(f"{text!r} names no model (model=NAME)")
    return unit


control_spec.__name__ = "ControlNet unit"


def output_path(out: Path | None, mode: str, output_format: str) -> Path:
    """Where to write: --out with the format's extension (x.png with --format jpeg is written as x.jpg;
    a name without an image suffix gets one added); by default MODE.EXT."""
    suffixes = _SUFFIXES[output_format]
    if out is None:
        return Path(f"{mode}{suffixes[0]}")
    if out.suffix.lower() in suffixes:
        return out
    if out.suffix.lower() in _IMAGE_SUFFIXES:
        return out.with_suffix(suffixes[0])
    return out.with_name(out.name + suffixes[0])


def _output_paths(out: Path, count: int) -> list[Path]:
    if count == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{i}{out.suffix}") for i in range(count)]


def _add_generation_args(p: argparse.ArgumentParser, mode: str) -> None:
    contract = MODES[mode]
    p.add_argument("--addr", default=None, help=f"service address (default {contract.default_address})")
    p.add_argument("--prompt", default="", help="what to draw")
    p.add_argument("--negative-prompt", default="", help="what to avoid")
    p.add_argument("--steps", type=whole(0, UINT32), default=0, help="denoising steps (default: the service's)")
    p.add_argument("--guidance", type=float, default=None, help="CFG scale (default 7.5)")
    p.add_argument("--width", type=whole(0, UINT32), default=0, help="multiple of 8 (default: the service's)")
    p.add_argument("--height", type=whole(0, UINT32), default=0, help="multiple of 8 (default: the service's)")
    p.add_argument("--seed", type=seed, default=None,
                   help=f"0..{MAX_SEED}, or -1 for random (default: random, printed)")
    p.add_argument("--num-images", type=whole(0, UINT32), default=0, help="default 1")
    p.add_argument("--scheduler", default="", help="e.g. euler_a, dpmpp_2m, ddim (default: the model's)")
    p.add_argument("--schedule-type", default="",
                   help="uniform, karras, exponential, sgm_uniform or beta (default: the sampler's "
                        "Automatic)")
    p.add_argument("--clip-skip", type=whole(1, MAX_CLIP_SKIP), default=None,
                   help=f"1..{MAX_CLIP_SKIP}: stop the text encoder this many layers early, as A1111's Clip skip "
                        "(default 1: the last layer; SDXL always uses its penultimate layer)")
    p.add_argument("--lora", type=lora_weight, action="append", default=[], metavar="NAME[:WEIGHT]",
                   help="a LoRA the service has (its `info` lists them) and its weight (default 1); repeat for more; "
                        "<lora:NAME:WEIGHT> in the prompt works too")
    p.add_argument("--control", type=control_spec, action="append", default=[], metavar="model=NAME,image=PNG,...",
                   help="a ControlNet unit (the service's `info` lists its controlnets and preprocessors): "
                        "model, image, preprocessor, processor_res, threshold_a, threshold_b, weight, guidance_start, "
                        "guidance_end, control_mode (balanced, prompt, controlnet), resize_mode (resize, crop, fill), "
                        "pixel_perfect; repeat for more")
    p.add_argument("--format", default="png", choices=sorted(OUTPUT_FORMATS), help="output encoding")
    p.add_argument("--out", type=Path, default=None,
                   help=f"output file (default {mode}.png, {mode}.jpg or {mode}.webp); its extension follows "
                        "--format (x.png with --format jpeg is written as x.jpg); with several images, "
                        "NAME-0.EXT, NAME-1.EXT, ...")
    p.add_argument("--timeout", type=positive, default=600.0, help="deadline in seconds")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    if contract.takes_image:
        p.add_argument("--image", type=Path, required=True, help="input image")
        p.add_argument("--strength", type=float, default=None, help="0..1: how much to change")
        p.add_argument("--fit", choices=sorted(FIT_MODES), default=None,
                       help="fit the input to --width/--height (default: resize if both set, else keep); "
                            "fill: fit inside, stretch the edges; latent: stretch the input's latents")
    if contract.takes_mask:
        p.add_argument("--mask", type=Path, required=True, help="mask: white = repaint, black = keep")
        p.add_argument("--mask-blur", type=whole(0, MAX_MASK_BLUR), default=None,
                       help=f"blend radius in pixels, 0..{MAX_MASK_BLUR} (default {contract.default_mask_blur})")
        p.add_argument("--invert-mask", action="store_true", help="repaint the black part instead")
        p.add_argument("--only-masked", action="store_true",
                       help="repaint only the mask's surroundings, at --width x --height, pasted back")
        p.add_argument("--only-masked-padding", type=whole(0, MAX_ONLY_MASKED_PADDING), default=None,
                       help=f"--only-masked: pixels around the mask, 0..{MAX_ONLY_MASKED_PADDING} "
                            f"(default {contract.default_only_masked_padding})")
        p.add_argument("--masked-content", choices=list(MASKED_CONTENT), default=None,
                       help="what the masked area starts from (default original)")
    if "hires" in contract.request.DESCRIPTOR.fields_by_name:  # txt2img's second pass
        add_hires_args(p, whole)


def _run_generate(args) -> int:
    request = make_request(
        args.mode,
        args.prompt,
        negative_prompt=args.negative_prompt,
        steps=args.steps,
        guidance_scale=args.guidance,
        width=args.width,
        height=args.height,
        seed=args.seed,
        num_images=args.num_images,
        scheduler=args.scheduler,
        schedule_type=args.schedule_type,
        output_format=args.format,
        image=getattr(args, "image", None),
        mask=getattr(args, "mask", None),
        strength=getattr(args, "strength", None),
        fit=getattr(args, "fit", None),
        mask_blur=getattr(args, "mask_blur", None),
        invert_mask=getattr(args, "invert_mask", False),
        only_masked=getattr(args, "only_masked", False),
        only_masked_padding=getattr(args, "only_masked_padding", None),
        masked_content=getattr(args, "masked_content", None),
        clip_skip=args.clip_skip,
        loras=args.lora,
        hires=hires_of(args),
        control=args.control,
    )
    with ImageGenClient(args.mode, args.addr, timeout=args.timeout, security=ClientSecurity.from_env()) as client:
        result = _stream(client, request, args.quiet)
    return _write_result(result, args, args.mode, args.format)


def _stream(client: ImageGenClient, request, quiet: bool) -> Result | None:
    """Run the request, showing queue position and steps on stderr; the Result, or None."""
    result = None
    for event in client.stream(request):
        if isinstance(event, Queued) and not quiet:
            print(f"queued: {event.position} ahead", file=sys.stderr)
        elif isinstance(event, Progress) and not quiet:
            print(f"\rstep {event.step}/{event.total_steps}", end="", file=sys.stderr)
        elif isinstance(event, Result):
            result = event
    if not quiet:
        print(file=sys.stderr)
    return result


def _write_result(result: Result | None, args, mode: str, output_format: str) -> int:
    if result is None:
        print("error: the service ended the stream without a result", file=sys.stderr)
        return 1
    out = output_path(args.out, mode, output_format)
    if args.out is not None and out != args.out and not args.quiet:
        print(f"note: {output_format} output is written as {out}, not {args.out}", file=sys.stderr)
    paths = _output_paths(out, len(result.images))
    for path, image in zip(paths, result.images):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image.data)
        print(f"{path}  {image.width}x{image.height}  seed {image.seed}")
    return 0


def _format_of(data: bytes) -> str:
    """The output format a file is in (replay writes what it read), by its magic bytes; PNG otherwise."""
    if data[:2] == b"\xff\xd8":
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return "png"


class UsageError(Exception):
    """A one-line error about the command's input (exit code 2)."""


def _run_replay(args) -> int:
    try:
        data = args.source.read_bytes()
    except OSError as err:
        raise UsageError(f"cannot read {args.source}: {err.strerror or err}") from None
    try:
        params = read_parameters(data)
        check_recorded(params)
    except (NoParameters, ReplayError) as err:
        raise UsageError(f"{args.source}: {err}") from None
    if args.addr is None:
        args.addr = MODES[params.mode].default_address
    security = ClientSecurity.from_env()
    with ImageGenClient(params.mode, args.addr, timeout=args.timeout, security=security) as client:
        info = client.info()
        output_format = _format_of(data)
        try:
            request, warnings = replay_request(params, info, image=args.image, mask=args.mask,
                                               output_format=output_format, control_images=args.control_image)
        except ReplayError as err:
            raise UsageError(f"{args.source}: {err}") from None
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
        if not args.quiet:
            print(f"replaying {params.mode}: seed {params.seed}, {params.steps} steps, {params.sampler}",
                  file=sys.stderr)
        result = _stream(client, request, args.quiet)
    return _write_result(result, args, params.mode, output_format)


def _run_upscale(args) -> int:
    """One image through the service's Upscale; the result written to --out (its format's suffix)."""
    try:
        data = args.source.read_bytes()
    except OSError as err:
        raise UsageError(f"cannot read {args.source}: {err.strerror or err}") from None
    if bool(args.width) != bool(args.height):
        raise UsageError("--width and --height go together")
    request = pb.UpscaleRequest(image=pb.Image(data=data), upscaler=args.upscaler, scale=args.scale or 0,
                                width=args.width or 0, height=args.height or 0, crop=args.crop,
                                output_format=OUTPUT_FORMATS[args.format].enum,
                                upscaler_2=args.upscaler_2 or "", upscaler_2_visibility=args.visibility)
    with ImageGenClient(UPSCALE_MODE, args.addr, timeout=args.timeout, security=ClientSecurity.from_env()) as client:
        answer = client.upscale(request)
    out = output_path(args.out, "upscale", args.format)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(answer.image.data)
    print(f"{out}  {answer.image.width}x{answer.image.height}  {answer.image.infotext}")
    return 0


def _run_info(args) -> int:
    from google.protobuf import json_format

    with ImageGenClient(args.target, args.addr, security=ClientSecurity.from_env()) as client:
        if args.command == "health":
            status = client.health()
            print(status)
            return 0 if status == "SERVING" else 1
        info = client.info(rescan=args.rescan)
        print(json_format.MessageToJson(info, always_print_fields_with_no_presence=True))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m services.client", description=DESCRIPTION,
        epilog="Secured services: IMAGEGEN_TLS_CA (TLS), IMAGEGEN_TLS_CLIENT_CERT + IMAGEGEN_TLS_CLIENT_KEY "
               "(mutual TLS), IMAGEGEN_AUTH_TOKEN or IMAGEGEN_AUTH_TOKEN_FILE (shared token).")
    sub = parser.add_subparsers(dest="command", required=True)
    for mode in MODE_NAMES:
        p = sub.add_parser(mode, help=f"generate with the {mode} service")
        _add_generation_args(p, mode)
        p.set_defaults(mode=mode, handler=_run_generate)
    p = sub.add_parser("upscale", help=f"make an image bigger with the {UPSCALE_MODE} service's Upscale",
                       description="Upscale an image by a factor (--scale) or to a size (--width and --height) "
                                   "with an upscaler the service lists (`info img2img`: upscalers).")
    p.add_argument("source", type=Path, metavar="IMAGE", help="the image to upscale")
    p.add_argument("--upscaler", required=True, help="None, Lanczos, Nearest, or a model of its --upscaler-dir")
    p.add_argument("--scale", type=positive, default=None, help="scale by this, 1..8 (default 2)")
    p.add_argument("--width", type=whole(1, UINT32), default=None, help="scale to this width (with --height)")
    p.add_argument("--height", type=whole(1, UINT32), default=None, help="scale to this height (with --width)")
    p.add_argument("--crop", action="store_true", help="with a size: keep the aspect ratio, crop the centre")
    p.add_argument("--upscaler-2", default=None, help="a second upscaler blended over the first")
    p.add_argument("--visibility", type=float, default=0.0, help="how much of --upscaler-2 shows, 0..1")
    p.add_argument("--format", choices=list(OUTPUT_FORMATS), default="png", help="output format")
    p.add_argument("--addr", default=None, help="the service address (default: its port here)")
    p.add_argument("--out", type=Path, required=True, help="output file")
    p.add_argument("--timeout", type=positive, default=600.0, help="deadline in seconds")
    p.set_defaults(handler=_run_upscale)
    p = sub.add_parser("replay", help="make an image again from the parameters (infotext) it carries",
                       description="Regenerate an image from its infotext: the same service and model give the "
                                   "same pixels. The mode comes from the infotext; img2img needs the original "
                                   "input (--image), inpaint also its mask (--mask).")
    p.add_argument("source", type=Path, metavar="IMAGE", help="a PNG, JPEG or WEBP carrying parameters")
    p.add_argument("--image", type=Path, default=None, help="the input it was made from (img2img, inpaint)")
    p.add_argument("--mask", type=Path, default=None, help="the mask it was made with (inpaint)")
    p.add_argument("--control-image", type=Path, action="append", default=[],
                   help="a ControlNet unit's control image, once per unit in order (the infotext has none)")
    p.add_argument("--addr", default=None, help="the mode's service address (default: the mode's port here)")
    p.add_argument("--out", type=Path, required=True, help="output file (written in IMAGE's format)")
    p.add_argument("--timeout", type=positive, default=600.0, help="deadline in seconds")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(handler=_run_replay)
    for command, text in (("info", "show a service's model, schedulers, defaults and limits"),
                          ("health", "print SERVING / NOT_SERVING / UNREACHABLE (exit 0 only if SERVING)")):
        p = sub.add_parser(command, help=text)
        p.add_argument("target", choices=MODE_NAMES)
        p.add_argument("--addr", default=None, help="service address (default: the mode's)")
        if command == "info":
            p.add_argument("--rescan", action="store_true",
                           help="have the service rescan its --models-dir first")
        p.set_defaults(handler=_run_info)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ServiceError as err:
        print(f"error: {err.code().name}: {err.details()}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
