"""The command line: `python -m services.client txt2img|img2img|inpaint|info|health ...`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from imagegen.v1.contract import FIT_MODES, MODE_NAMES, MODES, OUTPUT_FORMATS

from .client import ImageGenClient
from .errors import ServiceError
from .events import Progress, Queued, Result
from .requests import make_request
from .security import ClientSecurity

DESCRIPTION = "Python client and command-line tool for the imagegen.v1 services."


def _output_paths(out: Path, count: int) -> list[Path]:
    if count == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{i}{out.suffix}") for i in range(count)]


def _add_generation_args(p: argparse.ArgumentParser, mode: str) -> None:
    contract = MODES[mode]
    p.add_argument("--addr", default=None, help=f"service address (default {contract.default_address})")
    p.add_argument("--prompt", default="", help="what to draw")
    p.add_argument("--negative-prompt", default="", help="what to avoid")
    p.add_argument("--steps", type=int, default=0, help="denoising steps (default: the service's)")
    p.add_argument("--guidance", type=float, default=None, help="CFG scale (default 7.5)")
    p.add_argument("--width", type=int, default=0, help="multiple of 8 (default: the service's)")
    p.add_argument("--height", type=int, default=0, help="multiple of 8 (default: the service's)")
    p.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    p.add_argument("--num-images", type=int, default=0, help="default 1")
    p.add_argument("--scheduler", default="", help="e.g. euler_a, dpmpp_2m, ddim (default: the model's)")
    p.add_argument("--format", default="png", choices=sorted(OUTPUT_FORMATS), help="output encoding")
    p.add_argument("--out", type=Path, default=Path(f"{mode}.png"),
                   help="output file; with several images, NAME-0.png, NAME-1.png, ...")
    p.add_argument("--timeout", type=float, default=600.0, help="deadline in seconds")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    if contract.takes_image:
        p.add_argument("--image", type=Path, required=True, help="input image")
        p.add_argument("--strength", type=float, default=None, help="0..1: how much to change")
        p.add_argument("--fit", choices=sorted(FIT_MODES), default=None,
                       help="fit the input to --width/--height (default: resize if both set, else keep)")
    if contract.takes_mask:
        p.add_argument("--mask", type=Path, required=True, help="mask: white = repaint, black = keep")
        p.add_argument("--mask-blur", type=int, default=None, help=f"blend radius in pixels (default {contract.default_mask_blur})")
        p.add_argument("--invert-mask", action="store_true", help="repaint the black part instead")


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
        output_format=args.format,
        image=getattr(args, "image", None),
        mask=getattr(args, "mask", None),
        strength=getattr(args, "strength", None),
        fit=getattr(args, "fit", None),
        mask_blur=getattr(args, "mask_blur", None),
        invert_mask=getattr(args, "invert_mask", False),
    )
    with ImageGenClient(args.mode, args.addr, timeout=args.timeout, security=ClientSecurity.from_env()) as client:
        result = None
        for event in client.stream(request):
            if isinstance(event, Queued) and not args.quiet:
                print(f"queued: {event.position} ahead", file=sys.stderr)
            elif isinstance(event, Progress) and not args.quiet:
                print(f"\rstep {event.step}/{event.total_steps}", end="", file=sys.stderr)
            elif isinstance(event, Result):
                result = event
        if not args.quiet:
            print(file=sys.stderr)
    paths = _output_paths(args.out, len(result.images))
    for path, image in zip(paths, result.images):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image.data)
        print(f"{path}  {image.width}x{image.height}  seed {image.seed}")
    return 0


def _run_info(args) -> int:
    from google.protobuf import json_format

    with ImageGenClient(args.target, args.addr, security=ClientSecurity.from_env()) as client:
        if args.command == "health":
            status = client.health()
            print(status)
            return 0 if status == "SERVING" else 1
        print(json_format.MessageToJson(client.info(), always_print_fields_with_no_presence=True))
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
    for command, text in (("info", "show a service's model, schedulers, defaults and limits"),
                          ("health", "print SERVING / NOT_SERVING / UNREACHABLE (exit 0 only if SERVING)")):
        p = sub.add_parser(command, help=text)
        p.add_argument("target", choices=MODE_NAMES)
        p.add_argument("--addr", default=None, help="service address (default: the mode's)")
        p.set_defaults(handler=_run_info)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ServiceError as err:
        print(f"error: {err.code().name}: {err.details()}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
