"""Python client and command-line tool for the imagegen.v1 services.

    python -m services.client txt2img --prompt "a red fox" --seed 7 --out fox.png
    python -m services.client img2img --image in.png --strength 0.6 --prompt "oil painting" --out out.png
    python -m services.client inpaint --image in.png --mask mask.png --prompt "a cat" --out cat.png
    python -m services.client info txt2img

In code:

    with ImageGenClient("txt2img", "127.0.0.1:50051") as client:
        response = client.generate(make_request("txt2img", prompt="a red fox", seed=7))
        open("fox.png", "wb").write(response.images[0].data)

Only grpcio and the generated code are needed: no torch, no diffusers.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1 import imagegen_pb2_grpc as pb_grpc

MODES = ("txt2img", "img2img", "inpaint")
DEFAULT_ADDRESSES = {"txt2img": "127.0.0.1:50051", "img2img": "127.0.0.1:50052", "inpaint": "127.0.0.1:50053"}
SERVICE_NAMES = {"txt2img": "imagegen.v1.Txt2Img", "img2img": "imagegen.v1.Img2Img", "inpaint": "imagegen.v1.Inpaint"}
_STUBS = {"txt2img": pb_grpc.Txt2ImgStub, "img2img": pb_grpc.Img2ImgStub, "inpaint": pb_grpc.InpaintStub}
_REQUESTS = {"txt2img": pb.Txt2ImgRequest, "img2img": pb.Img2ImgRequest, "inpaint": pb.InpaintRequest}
FORMATS = {"png": pb.IMAGE_FORMAT_PNG, "jpeg": pb.IMAGE_FORMAT_JPEG, "webp": pb.IMAGE_FORMAT_WEBP}
FITS = {"resize": pb.FIT_MODE_RESIZE, "crop": pb.FIT_MODE_CROP, "keep": pb.FIT_MODE_KEEP}
MiB = 1024 * 1024
RETRY_AFTER_KEY = "retry-after-ms"


@dataclass(frozen=True)
class ClientSecurity:
    """How a client reaches secured services: TLS (ca), mutual TLS (cert + key), a shared token."""

    ca: Path | None = None  # CA (PEM) that signed the services' certificates; set = TLS
    cert: Path | None = None  # this client's certificate chain (PEM), for mutual TLS
    key: Path | None = None
    token: str | None = None  # sent as `authorization: Bearer <token>`
    server_name: str | None = None  # the name to check in the service's certificate, if not the address's

    @classmethod
    def from_env(cls, environ=None) -> "ClientSecurity":
        """IMAGEGEN_TLS_CA, IMAGEGEN_TLS_CLIENT_CERT, IMAGEGEN_TLS_CLIENT_KEY, IMAGEGEN_AUTH_TOKEN
        (or IMAGEGEN_AUTH_TOKEN_FILE), IMAGEGEN_TLS_SERVER_NAME."""
        environ = os.environ if environ is None else environ

        def path(name):
            return Path(environ[name]) if environ.get(name) else None

        token = environ.get("IMAGEGEN_AUTH_TOKEN") or None
        if environ.get("IMAGEGEN_AUTH_TOKEN_FILE"):
            token = Path(environ["IMAGEGEN_AUTH_TOKEN_FILE"]).read_text().strip()
        return cls(path("IMAGEGEN_TLS_CA"), path("IMAGEGEN_TLS_CLIENT_CERT"), path("IMAGEGEN_TLS_CLIENT_KEY"),
                   token, environ.get("IMAGEGEN_TLS_SERVER_NAME") or None)

    def credentials(self) -> grpc.ChannelCredentials | None:
        if self.ca is None:
            return None
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.read_bytes(),
            private_key=self.key.read_bytes() if self.key else None,
            certificate_chain=self.cert.read_bytes() if self.cert else None,
        )


def retry_after_s(err: grpc.RpcError) -> float | None:
    """The server's retry hint on a full queue (trailing metadata), or None if it gave none."""
    for key, value in (err.trailing_metadata() or ()):
        if key == RETRY_AFTER_KEY:
            try:
                return int(value) / 1000
            except ValueError:
                return None
    return None


def _image(value) -> pb.Image:
    """An Image message from bytes, a path, or a PIL image."""
    if isinstance(value, pb.Image):
        return value
    if isinstance(value, (bytes, bytearray)):
        return pb.Image(data=bytes(value))
    if isinstance(value, (str, os.PathLike)):
        return pb.Image(data=Path(value).read_bytes())
    if hasattr(value, "save"):  # PIL image
        import io

        buf = io.BytesIO()
        value.save(buf, format="PNG")
        return pb.Image(data=buf.getvalue(), mime_type="image/png")
    raise TypeError(f"cannot make an image from {type(value).__name__}")


def make_request(
    mode: str,
    prompt: str = "",
    *,
    negative_prompt: str = "",
    steps: int = 0,
    guidance_scale: float | None = None,
    width: int = 0,
    height: int = 0,
    seed: int | None = None,
    num_images: int = 0,
    scheduler: str = "",
    output_format: str = "png",
    quality: int = 0,
    image=None,
    mask=None,
    strength: float | None = None,
    fit: str | None = None,
    mask_blur: int | None = None,
    invert_mask: bool = False,
):
    """The request message for `mode`; None and 0 leave a field to the service's default."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    params = pb.GenerationParams(
        prompt=prompt,
        negative_prompt=negative_prompt,
        num_inference_steps=steps,
        width=width,
        height=height,
        num_images=num_images,
        scheduler=scheduler,
        output_format=FORMATS[output_format],
        quality=quality,
    )
    if guidance_scale is not None:
        params.guidance_scale = guidance_scale
    if seed is not None:
        params.seed = seed
    request = _REQUESTS[mode](params=params)
    if mode == "txt2img":
        return request
    if image is not None:
        request.init_image.CopyFrom(_image(image))
    if strength is not None:
        request.strength = strength
    if fit is not None:
        request.fit = FITS[fit]
    if mode == "inpaint":
        if mask is not None:
            request.mask_image.CopyFrom(_image(mask))
        if mask_blur is not None:
            request.mask_blur = mask_blur
        request.invert_mask = invert_mask
    return request


class _RetryingStream:
    """A GenerateStream call that is retried (with backoff) while the queue is full.

    Iterate it for events; `cancel()` stops the work. Only a refusal before the first event is
    retried, so no event is ever seen twice.
    """

    def __init__(self, client: "ImageGenClient", request, timeout: float):
        self._client = client
        self._request = request
        self._deadline = time.monotonic() + timeout
        self._cancelled = False
        self._call = client.stub.GenerateStream(request, timeout=timeout, metadata=client.metadata)
        self._events = self._iterate()

    def _iterate(self):
        attempt = 0
        while True:
            seen = False
            try:
                for event in self._call:
                    seen = True
                    yield event
                return
            except grpc.RpcError as err:
                delay = None if seen or self._cancelled else self._client._retry_delay(err, attempt, self._deadline)
                if delay is None:
                    raise
            time.sleep(delay)
            attempt += 1
            self._call = self._client.stub.GenerateStream(
                self._request, timeout=max(0.001, self._deadline - time.monotonic()), metadata=self._client.metadata)

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._events)

    def cancel(self) -> None:
        self._cancelled = True
        self._call.cancel()


class ImageGenClient:
    """One mode's service over one channel. Every call has a deadline (`timeout`, seconds).

    `address` is any gRPC target: host:port, dns:///name:port (all replicas behind a DNS name, in
    round robin), or ipv4:host1:port1,host2:port2.

    A full queue (RESOURCE_EXHAUSTED with a retry hint) is retried up to `retries` times, waiting
    the server's hint or an exponential backoff from `backoff_s`, whichever is longer, with jitter,
    and never past the call's deadline.
    """

    def __init__(
        self,
        mode: str,
        address: str | None = None,
        *,
        timeout: float = 300.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        max_message_bytes: int = 256 * MiB,
        security: ClientSecurity | None = None,
        channel: grpc.Channel | None = None,
    ):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        self.mode = mode
        self.address = address or DEFAULT_ADDRESSES[mode]
        self.timeout = timeout
        self.retries = retries
        self.backoff_s = backoff_s
        self.security = security or ClientSecurity()
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            # Spread calls over every address the target resolves to: a headless Service's
            # pods (dns:///txt2img:50051) or a list (ipv4:10.0.0.1:50051,10.0.0.2:50051).
            ("grpc.lb_policy_name", "round_robin"),
            # A restarted service is found again within seconds, not after minutes of backoff.
            ("grpc.initial_reconnect_backoff_ms", 500),
            ("grpc.max_reconnect_backoff_ms", 5000),
        ]
        if self.security.server_name:
            options.append(("grpc.ssl_target_name_override", self.security.server_name))
        credentials = self.security.credentials()
        if channel is not None:
            self.channel = channel
        elif credentials is not None:
            self.channel = grpc.secure_channel(self.address, credentials, options=options)
        else:
            self.channel = grpc.insecure_channel(self.address, options=options)
        self.metadata = (("authorization", f"Bearer {self.security.token}"),) if self.security.token else ()
        self.stub = _STUBS[mode](self.channel)
        self._health = health_pb2_grpc.HealthStub(self.channel)

    def _retry_delay(self, err: grpc.RpcError, attempt: int, deadline: float) -> float | None:
        """Seconds to wait before retrying, or None when the error is not worth retrying."""
        if err.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or attempt >= self.retries:
            return None
        hint = retry_after_s(err)
        if hint is None:  # out of memory, or a message over the size limit: retrying will not help
            return None
        delay = max(hint, self.backoff_s * 2**attempt) * random.uniform(1.0, 1.25)
        return delay if time.monotonic() + delay < deadline else None

    def generate(self, request, timeout: float | None = None) -> pb.GenerateResponse:
        deadline = time.monotonic() + (timeout or self.timeout)
        attempt = 0
        while True:
            try:
                return self.stub.Generate(request, timeout=max(0.001, deadline - time.monotonic()),
                                         metadata=self.metadata)
            except grpc.RpcError as err:
                delay = self._retry_delay(err, attempt, deadline)
                if delay is None:
                    raise
            time.sleep(delay)
            attempt += 1

    def stream(self, request, timeout: float | None = None) -> _RetryingStream:
        """The GenerateStream call: iterate it for events; `.cancel()` stops the work."""
        return _RetryingStream(self, request, timeout or self.timeout)

    def info(self, timeout: float = 10.0) -> pb.ServiceInfo:
        return self.stub.GetInfo(pb.GetInfoRequest(), timeout=timeout, metadata=self.metadata)

    def health(self, timeout: float = 5.0) -> str:
        """SERVING, NOT_SERVING, or UNREACHABLE."""
        try:
            reply = self._health.Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAMES[self.mode]), timeout=timeout
            )
        except grpc.RpcError:
            return "UNREACHABLE"
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    def wait_until_serving(self, timeout: float = 120.0, interval: float = 0.25) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.health(timeout=min(5.0, max(0.1, deadline - time.monotonic()))) == "SERVING":
                return True
            time.sleep(interval)
        return False

    def close(self) -> None:
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- command line

def _output_paths(out: Path, count: int) -> list[Path]:
    if count == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{i}{out.suffix}") for i in range(count)]


def _add_generation_args(p: argparse.ArgumentParser, mode: str) -> None:
    p.add_argument("--addr", default=None, help=f"service address (default {DEFAULT_ADDRESSES[mode]})")
    p.add_argument("--prompt", default="", help="what to draw")
    p.add_argument("--negative-prompt", default="", help="what to avoid")
    p.add_argument("--steps", type=int, default=0, help="denoising steps (default: the service's)")
    p.add_argument("--guidance", type=float, default=None, help="CFG scale (default 7.5)")
    p.add_argument("--width", type=int, default=0, help="multiple of 8 (default: the service's)")
    p.add_argument("--height", type=int, default=0, help="multiple of 8 (default: the service's)")
    p.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    p.add_argument("--num-images", type=int, default=0, help="default 1")
    p.add_argument("--scheduler", default="", help="e.g. euler_a, dpmpp_2m, ddim (default: the model's)")
    p.add_argument("--format", default="png", choices=sorted(FORMATS), help="output encoding")
    p.add_argument("--out", type=Path, default=Path(f"{mode}.png"),
                   help="output file; with several images, NAME-0.png, NAME-1.png, ...")
    p.add_argument("--timeout", type=float, default=600.0, help="deadline in seconds")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    if mode in ("img2img", "inpaint"):
        p.add_argument("--image", type=Path, required=True, help="input image")
        p.add_argument("--strength", type=float, default=None, help="0..1: how much to change")
        p.add_argument("--fit", choices=sorted(FITS), default=None,
                       help="fit the input to --width/--height (default: resize if both set, else keep)")
    if mode == "inpaint":
        p.add_argument("--mask", type=Path, required=True, help="mask: white = repaint, black = keep")
        p.add_argument("--mask-blur", type=int, default=None, help="blend radius in pixels (default 4)")
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
            kind = event.WhichOneof("event")
            if kind == "queued" and not args.quiet:
                print(f"queued: {event.queued.position} ahead", file=sys.stderr)
            elif kind == "progress" and not args.quiet:
                print(f"\rstep {event.progress.step}/{event.progress.total_steps}", end="", file=sys.stderr)
            elif kind == "result":
                result = event.result
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
        prog="python -m services.client", description=__doc__.split("\n")[0],
        epilog="Secured services: IMAGEGEN_TLS_CA (TLS), IMAGEGEN_TLS_CLIENT_CERT + IMAGEGEN_TLS_CLIENT_KEY "
               "(mutual TLS), IMAGEGEN_AUTH_TOKEN or IMAGEGEN_AUTH_TOKEN_FILE (shared token).")
    sub = parser.add_subparsers(dest="command", required=True)
    for mode in MODES:
        p = sub.add_parser(mode, help=f"generate with the {mode} service")
        _add_generation_args(p, mode)
        p.set_defaults(mode=mode, handler=_run_generate)
    for command, text in (("info", "show a service's model, schedulers, defaults and limits"),
                          ("health", "print SERVING / NOT_SERVING / UNREACHABLE (exit 0 only if SERVING)")):
        p = sub.add_parser(command, help=text)
        p.add_argument("target", choices=MODES)
        p.add_argument("--addr", default=None, help="service address (default: the mode's)")
        p.set_defaults(handler=_run_info)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except grpc.RpcError as err:
        print(f"error: {err.code().name}: {err.details()}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
