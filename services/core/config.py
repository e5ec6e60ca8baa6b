"""Service settings: command-line flags, each with an IMAGEGEN_* environment equivalent.

Read once, in `load_config`, when a service starts - never at import time.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

from imagegen.v1.contract import DEFAULTS, LIMITS

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    max_width: int = LIMITS.max_width
    max_height: int = LIMITS.max_height
    max_pixels: int = LIMITS.max_pixels
    max_steps: int = LIMITS.max_steps
    max_images: int = LIMITS.max_images
    max_prompt_chars: int = LIMITS.max_prompt_chars
    max_guidance_scale: float = LIMITS.max_guidance_scale
    max_input_pixels: int = LIMITS.max_input_pixels
    max_message_bytes: int = LIMITS.max_message_bytes
    max_queue: int = LIMITS.max_queue
    # Batching: images per pipeline call (1 = off), and how long the worker waits for more to arrive.
    max_batch_images: int = LIMITS.max_batch_images
    batch_wait_s: float = 0.01


@dataclass(frozen=True)
class Defaults:
    """What unset request fields become; per-mode ones (strength, mask blur) are the contract's."""

    num_inference_steps: int = DEFAULTS.num_inference_steps
    guidance_scale: float = DEFAULTS.guidance_scale
    size: int = DEFAULTS.width
    quality: int = DEFAULTS.quality


@dataclass(frozen=True)
class ServiceConfig:
    mode: str  # the mode's name, for messages; the Mode itself is passed alongside
    model: str
    model_config: Path | None = None  # a single-file checkpoint's component configs (a diffusers folder)
    lora_dir: Path | None = None  # every NAME.safetensors in it is the LoRA NAME (models/loras.py)
    host: str = "127.0.0.1"
    port: int = 0  # load_config gives the mode's own; 0 picks a free one
    device: str = "auto"
    dtype: str = "auto"
    cache_dir: Path = field(default_factory=lambda: default_cache_dir(os.environ))
    grace_s: float = 30.0
    warmup: bool = True
    engine: str = "step"  # "step": the shared denoising loop; "pipeline": diffusers pipeline calls
    log_level: str = "INFO"
    metrics_port: int = -1  # -1 = no metrics endpoint; 0 = a free port
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    auth_token: str | None = None
    limits: Limits = field(default_factory=Limits)
    defaults: Defaults = field(default_factory=Defaults)


def default_cache_dir(environ) -> Path:
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "imagegen"


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser(mode, environ) -> argparse.ArgumentParser:
    """The flags of `mode` (a core.mode.Mode): its defaults for model and ports come from it."""
    def env(name, default):
        return environ.get(f"IMAGEGEN_{name}", default)

    p = argparse.ArgumentParser(
        prog=f"python -m services.{mode.name}",
        description=f"Serve {mode.name} image generation over gRPC (imagegen.v1).",
        epilog="Every flag can also be set by its IMAGEGEN_* environment variable (shown in brackets); "
        "a flag wins over the environment.",
    )
    p.add_argument("--model", default=env("MODEL", mode.default_model),
                   help="Hugging Face id, local diffusers folder, 'tiny' or 'tiny-xl' (embedded toy SD and "
                        "SDXL models), or a single-file checkpoint (.safetensors, .ckpt) in A1111's layout [MODEL]")
    p.add_argument("--model-config", type=Path, default=env("MODEL_CONFIG", None),
                   help="for a single-file --model: a diffusers folder of the same architecture whose configs "
                        "(not weights) describe the components; without it they come from the hub [MODEL_CONFIG]")
    p.add_argument("--lora-dir", type=Path, default=env("LORA_DIR", None),
                   help="a folder of LoRAs: every NAME.safetensors in it (diffusers' or kohya's format) can be "
                        "asked for by NAME, per request (params.loras or <lora:NAME:weight> in a prompt) [LORA_DIR]")
    p.add_argument("--host", default=env("HOST", "127.0.0.1"),
                   help="address to bind; 0.0.0.0 or [::] for all interfaces [HOST]")
    p.add_argument("--port", type=int, default=int(env("PORT", mode.contract.port)),
                   help="port to bind; 0 picks a free one [PORT]")
    p.add_argument("--device", default=env("DEVICE", "auto"),
                   help="cuda:N, cpu, or auto (cuda:0 when CUDA is there, else cpu) [DEVICE]")
    p.add_argument("--dtype", default=env("DTYPE", "auto"),
                   choices=["auto", "float16", "bfloat16", "float32"],
                   help="auto = float16 on CUDA, float32 on CPU [DTYPE]")
    p.add_argument("--cache-dir", type=Path, default=Path(env("CACHE_DIR", default_cache_dir(environ))),
                   help="where the tiny model is built and kept [CACHE_DIR]")
    p.add_argument("--grace", type=float, default=float(env("GRACE_S", 30.0)),
                   help="seconds in-flight work may take to finish on SIGTERM [GRACE_S]")
    p.add_argument("--queue-size", type=int, default=int(env("QUEUE_SIZE", Limits.max_queue)),
                   help="requests that may wait; more are refused RESOURCE_EXHAUSTED [QUEUE_SIZE]")
    p.add_argument("--max-batch-size", type=int, default=int(env("MAX_BATCH_SIZE", Limits.max_batch_images)),
                   help="images per pipeline call when queued requests can share one; 1 turns batching off "
                        "[MAX_BATCH_SIZE]")
    p.add_argument("--batch-wait-ms", type=float, default=float(env("BATCH_WAIT_MS", Limits.batch_wait_s * 1000)),
                   help="how long the worker waits for more requests to batch (step engine: to start together "
                        "when idle) [BATCH_WAIT_MS]")
    p.add_argument("--metrics-port", type=int, default=int(env("METRICS_PORT", mode.contract.metrics_port)),
                   help="Prometheus /metrics port on --host; -1 turns it off [METRICS_PORT]")
    p.add_argument("--tls-cert", type=Path, default=env("TLS_CERT", None),
                   help="server certificate chain (PEM); with --tls-key, the port serves TLS only [TLS_CERT]")
    p.add_argument("--tls-key", type=Path, default=env("TLS_KEY", None), help="server private key (PEM) [TLS_KEY]")
    p.add_argument("--tls-client-ca", type=Path, default=env("TLS_CLIENT_CA", None),
                   help="CA (PEM) that client certificates must be signed by: mutual TLS [TLS_CLIENT_CA]")
    p.add_argument("--auth-token-file", type=Path, default=env("AUTH_TOKEN_FILE", None),
                   help="file holding a shared token; calls must send 'authorization: Bearer <token>' "
                        "(health and reflection stay open). IMAGEGEN_AUTH_TOKEN gives the token itself "
                        "[AUTH_TOKEN_FILE]")
    p.add_argument("--max-message-mb", type=float,
                   default=float(env("MAX_MESSAGE_MB", Limits.max_message_bytes / MiB)),
                   help="largest message accepted or sent, in MiB [MAX_MESSAGE_MB]")
    p.add_argument("--max-size", type=int, default=int(env("MAX_SIZE", Limits.max_width)),
                   help="largest width or height in pixels [MAX_SIZE]")
    p.add_argument("--max-pixels", type=int, default=int(env("MAX_PIXELS", Limits.max_pixels)),
                   help="largest width x height [MAX_PIXELS]")
    p.add_argument("--max-steps", type=int, default=int(env("MAX_STEPS", Limits.max_steps)),
                   help="most denoising steps per request [MAX_STEPS]")
    p.add_argument("--max-images", type=int, default=int(env("MAX_IMAGES", Limits.max_images)),
                   help="most images per request [MAX_IMAGES]")
    p.add_argument("--default-steps", type=int, default=int(env("DEFAULT_STEPS", Defaults.num_inference_steps)),
                   help="steps when a request leaves them unset [DEFAULT_STEPS]")
    p.add_argument("--default-size", type=int, default=int(env("DEFAULT_SIZE", Defaults.size)),
                   help="txt2img width and height when a request leaves them unset [DEFAULT_SIZE]")
    p.add_argument("--engine", default=env("ENGINE", "step"), choices=["step", "pipeline"],
                   help="step: one denoising loop that requests join and leave at every step (mixed steps, "
                        "guidance and schedulers share UNet calls); pipeline: whole requests through the "
                        "diffusers pipeline, batched when alike [ENGINE]")
    p.add_argument("--warmup", type=_bool, default=_bool(env("WARMUP", "true")),
                   help="run one small generation before reporting SERVING [WARMUP]")
    p.add_argument("--log-level", default=env("LOG_LEVEL", "INFO"),
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="[LOG_LEVEL]")
    return p


def load_config(mode, argv=None, environ=None) -> ServiceConfig:
    """The settings of a service of `mode` (a core.mode.Mode) from flags and environment."""
    environ = os.environ if environ is None else environ
    parser = build_parser(mode, environ)
    args = parser.parse_args(argv)
    for name in ("max_size", "max_pixels", "max_steps", "max_images", "queue_size", "default_steps",
                 "max_batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.max_size % 8 or args.default_size % 8 or not 64 <= args.default_size <= args.max_size:
        parser.error("--max-size and --default-size must be multiples of 8, with 64 <= default <= max")
    if not 0 <= args.port <= 65535:
        parser.error("--port must be 0..65535")
    if not -1 <= args.metrics_port <= 65535:
        parser.error("--metrics-port must be -1 (off) or 0..65535")
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if args.tls_client_ca and not args.tls_cert:
        parser.error("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key")
    if args.model_config is not None and not args.model_config.is_dir():
        parser.error(f"--model-config: {args.model_config} is not a folder")
    if args.lora_dir is not None and not args.lora_dir.is_dir():
        parser.error(f"--lora-dir: {args.lora_dir} is not a folder")
    for name in ("tls_cert", "tls_key", "tls_client_ca", "auth_token_file"):
        path = getattr(args, name)
        if path is not None and not path.is_file():
            parser.error(f"--{name.replace('_', '-')}: {path} is not a readable file")
    from .rpc.security import read_token

    try:
        token = read_token(args.auth_token_file, environ.get("IMAGEGEN_AUTH_TOKEN"))
    except ValueError as exc:
        parser.error(f"--auth-token-file: {exc}")
    limits = Limits(
        max_width=args.max_size,
        max_height=args.max_size,
        max_pixels=args.max_pixels,
        max_steps=args.max_steps,
        max_images=args.max_images,
        max_message_bytes=int(args.max_message_mb * MiB),
        max_queue=args.queue_size,
        max_batch_images=args.max_batch_size,
        batch_wait_s=max(0.0, args.batch_wait_ms / 1000),
    )
    defaults = Defaults(
        num_inference_steps=min(args.default_steps, args.max_steps), size=args.default_size
    )
    return ServiceConfig(
        mode=mode.name,
        model=args.model,
        model_config=args.model_config.expanduser() if args.model_config else None,
        lora_dir=args.lora_dir.expanduser() if args.lora_dir else None,
        host=args.host,
        port=args.port,
        device=args.device,
        dtype=args.dtype,
        cache_dir=args.cache_dir.expanduser(),
        grace_s=args.grace,
        warmup=args.warmup,
        engine=args.engine,
        log_level=args.log_level,
        metrics_port=args.metrics_port,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        auth_token=token,
        limits=limits,
        defaults=defaults,
    )
