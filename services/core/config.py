"""Service settings: command-line flags, each with an IMAGEGEN_* environment equivalent, declared once
in the tables below (imagegen.v1.flags builds the parser, the fallbacks and the bounds from them).

Read once, in `load_config`, when a service starts - never at import time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import DEFAULTS, LIMITS
from imagegen.v1.flags import Flag, FlagParser, boolean

MiB = 1024 * 1024


# Derived from the contract, so a new limit is a proto field and a LIMITS value (plus a row of
# LIMIT_FLAGS when operators may set it), never a field list to keep in step by hand.
LIMIT_FIELDS: tuple[str, ...] = tuple(pb.Limits.DESCRIPTOR.fields_by_name)
Limits = make_dataclass(
    "Limits",
    [(name, type(getattr(LIMITS, name)), field(default=getattr(LIMITS, name))) for name in LIMIT_FIELDS]
    + [("batch_wait_s", float, field(default=0.01))],
    frozen=True,
    namespace={
        "__module__": __name__,
        "__doc__": "What a request may ask for: pb.Limits field for field, by its names (GetInfo sends them "
        "as they are), defaults the contract's LIMITS; and batch_wait_s, the service's own: how long the "
        "worker waits for more requests to batch.",
    },
)


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
    embeddings_dir: Path | None = None  # A1111's textual-inversion files, by name (models/embeddings.py)
    upscaler_dir: Path | None = None  # every NAME.pth / NAME.safetensors in it is the upscaler NAME (upscalers.py)
    models_dir: Path | None = None  # every diffusers folder and checkpoint file in it, by name (catalog.py)
    controlnet_dir: Path | None = None  # every ControlNet folder and file in it, by name (models/controlnets.py)
    max_loaded: int = 1  # models on the device at once (models/pool.py)
    ram_cache_gb: float = 8.0  # host memory for models moved off the device, least recently used out first
    host: str = "127.0.0.1"
    port: int = 0  # load_config gives the mode's own; 0 picks a free one
    device: str = "auto"
    dtype: str = "auto"
    cache_dir: Path = field(default_factory=lambda: default_cache_dir(os.environ))
    grace_s: float = 30.0
    warmup: bool = True
    engine: str = "step"  # "step": the shared denoising loop; "pipeline": diffusers pipeline calls
    cohorts: bool = True  # step engine: rows that arrived together step as one (engine/cohorts.py)
    compile: bool = False  # the step engine's UNet through torch.compile (engine/graphs.py)
    compile_buckets: tuple[int, ...] = (1, 2, 4, 8, 16)  # UNet rows a compiled call is padded up to
    # (width, height) of the images whose UNet and decode calls are compiled; (): --default-size square
    compile_sizes: tuple[tuple[int, int], ...] = ()
    compile_cache_dir: Path | None = None  # torch.compile's on-disk cache; None: cache_dir / "compile"
    log_level: str = "INFO"
    metrics_port: int = -1  # -1 = no metrics endpoint; 0 = a free port
    health_port: int = -1  # -1 = health and GetInfo on `port` only; 0 = a free port (rpc/probes.py)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    auth_token: str | None = None
    limits: Limits = field(default_factory=Limits)
    defaults: Defaults = field(default_factory=Defaults)


def default_cache_dir(environ) -> Path:
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "imagegen"


def buckets(text: str) -> tuple[int, ...]:
    """--compile-buckets' comma-separated row counts, ascending, each once."""
    values = sorted({int(part) for part in text.split(",") if part.strip()})
    if not values or values[0] < 1:
        raise ValueError(text)
    return tuple(values)


def sizes(text: str) -> tuple[tuple[int, int], ...]:
    """--compile-sizes' comma-separated sizes, WIDTHxHEIGHT or one number for a square, as (width, height)
    in order, each once."""
    out = []
    for part in (part.strip().lower() for part in text.split(",")):
        if part:
            width, _x, height = part.partition("x")
            size = (int(width), int(height or width))
            if size not in out:
                out.append(size)
    return tuple(out)


def megabytes(text: str) -> int:
    """--max-message-mb's MiB as the bytes Limits keeps."""
    return int(float(text) * MiB)


def milliseconds(text: str) -> float:
    """--batch-wait-ms's milliseconds as the seconds Limits keeps; below 0 is no wait."""
    return max(0.0, float(text) / 1000)


# The limits an operator may set, each once: the Limits field it sets (dest), its flag, variable, unit
# and help, its default from Limits (the contract's). The others (prompt characters, guidance scale,
# input pixels) keep the contract's value.
LIMIT_FLAGS = (
    Flag("--queue-size", "IMAGEGEN_QUEUE_SIZE", int, Limits.max_queue,
         "requests that may wait; more are refused RESOURCE_EXHAUSTED", min=1, dest="max_queue"),
    Flag("--max-batch-size", "IMAGEGEN_MAX_BATCH_SIZE", int, Limits.max_batch_images,
         "images per pipeline call when queued requests can share one; 1 turns batching off", min=1,
         dest="max_batch_images"),
    Flag("--batch-wait-ms", "IMAGEGEN_BATCH_WAIT_MS", milliseconds, Limits.batch_wait_s,
         "how long the worker waits for more requests to batch (step engine: to start together when idle)",
         dest="batch_wait_s"),
    Flag("--max-message-mb", "IMAGEGEN_MAX_MESSAGE_MB", megabytes, Limits.max_message_bytes,
         "largest message accepted or sent, in MiB", dest="max_message_bytes"),
    # One flag for both sides: load_config copies it to max_height.
    Flag("--max-size", "IMAGEGEN_MAX_SIZE", int, Limits.max_width, "largest width or height in pixels", min=1,
         dest="max_width"),
    Flag("--max-pixels", "IMAGEGEN_MAX_PIXELS", int, Limits.max_pixels, "largest width x height", min=1),
    Flag("--max-steps", "IMAGEGEN_MAX_STEPS", int, Limits.max_steps, "most denoising steps per request",
         min=1),
    Flag("--max-images", "IMAGEGEN_MAX_IMAGES", int, Limits.max_images, "most images per request", min=1),
)

# The defaults an operator may set, each setting the Defaults field of its dest.
DEFAULT_FLAGS = (
    Flag("--default-steps", "IMAGEGEN_DEFAULT_STEPS", int, Defaults.num_inference_steps,
         "steps when a request leaves them unset", min=1, dest="num_inference_steps"),
    Flag("--default-size", "IMAGEGEN_DEFAULT_SIZE", int, Defaults.size,
         "txt2img width and height when a request leaves them unset", dest="size"),
)


def serving_flags(mode, environ) -> tuple[Flag, ...]:
    """How a service of `mode` (a core.mode.Mode) runs; each dest is the ServiceConfig field it sets,
    but --auth-token-file's (load_config reads the token from it)."""
    return (
        Flag("--model", "IMAGEGEN_MODEL", str, mode.default_model,
             "Hugging Face id, local diffusers folder, 'tiny' or 'tiny-xl' (embedded toy SD and SDXL "
             "models), or a single-file checkpoint (.safetensors, .ckpt) in A1111's layout"),
        Flag("--model-config", "IMAGEGEN_MODEL_CONFIG", Path, None,
             "for a single-file --model: a diffusers folder of the same architecture whose configs (not "
             "weights) describe the components; without it they come from the hub"),
        Flag("--lora-dir", "IMAGEGEN_LORA_DIR", Path, None,
             "a folder of LoRAs: every NAME.safetensors in it (diffusers' or kohya's format) can be asked "
             "for by NAME, per request (params.loras or <lora:NAME:weight> in a prompt)"),
        Flag("--embeddings-dir", "IMAGEGEN_EMBEDDINGS_DIR", Path, None,
             "a folder of textual-inversion embeddings (A1111's .pt, .safetensors and .bin files, subfolders "
             "too): a prompt uses each by writing its file name without the extension; read at start"),
        Flag("--upscaler-dir", "IMAGEGEN_UPSCALER_DIR", Path, None,
             "a folder of upscaler models (ESRGAN's family, .pth or .safetensors, loaded without running pickled "
             "code): each can be asked for by its file name without extension (the Upscale RPC, img2img)"),
        Flag("--models-dir", "IMAGEGEN_MODELS_DIR", Path, None,
             "a folder of checkpoints: every diffusers folder and single-file checkpoint in it can be asked "
             "for by its name without extension (params.model); --model is the default"),
        Flag("--controlnet-dir", "IMAGEGEN_CONTROLNET_DIR", Path, None,
             "a folder of ControlNets: every diffusers ControlNet folder and single file in it can be asked "
             "for by its name without extension (params.control[i].model), for models of its family"),
        Flag("--max-loaded", "IMAGEGEN_MAX_LOADED", int, ServiceConfig.max_loaded,
             "models on the device at once; the least recently used one moves to host memory", min=1),
        Flag("--ram-cache-gb", "IMAGEGEN_RAM_CACHE_GB", float, ServiceConfig.ram_cache_gb,
             "host memory for models moved off the device (a switch back is a copy, not a load from disk); "
             "the least recently used beyond it are dropped", min=0),
        Flag("--host", "IMAGEGEN_HOST", str, ServiceConfig.host,
             "address to bind; 0.0.0.0 or [::] for all interfaces"),
        Flag("--port", "IMAGEGEN_PORT", int, mode.contract.port, "port to bind; 0 picks a free one",
             min=0, max=65535),
        Flag("--device", "IMAGEGEN_DEVICE", str, ServiceConfig.device,
             "cuda:N, cpu, or auto (cuda:0 when CUDA is there, else cpu)"),
        Flag("--dtype", "IMAGEGEN_DTYPE", str, ServiceConfig.dtype, "auto = float16 on CUDA, float32 on CPU",
             choices=("auto", "float16", "bfloat16", "float32")),
        Flag("--cache-dir", "IMAGEGEN_CACHE_DIR", Path, default_cache_dir(environ),
             "where the tiny model is built and kept"),
        Flag("--grace", "IMAGEGEN_GRACE_S", float, ServiceConfig.grace_s,
             "seconds in-flight work may take to finish on SIGTERM", dest="grace_s"),
        Flag("--metrics-port", "IMAGEGEN_METRICS_PORT", int, mode.contract.metrics_port,
             "Prometheus /metrics port on --host; -1 turns it off", min=-1, max=65535,
             bounds="-1 (off) or 0..65535"),
        Flag("--health-port", "IMAGEGEN_HEALTH_PORT", int, mode.contract.health_port,
             "a port on --host for health and GetInfo only, where probes get answers however many big "
             "uploads --port is receiving; -1 turns it off", min=-1, max=65535,
             bounds="-1 (off) or 0..65535"),
        Flag("--tls-cert", "IMAGEGEN_TLS_CERT", Path, None,
             "server certificate chain (PEM); with --tls-key, the port serves TLS only"),
        Flag("--tls-key", "IMAGEGEN_TLS_KEY", Path, None, "server private key (PEM)"),
        Flag("--tls-client-ca", "IMAGEGEN_TLS_CLIENT_CA", Path, None,
             "CA (PEM) that client certificates must be signed by: mutual TLS"),
        Flag("--auth-token-file", "IMAGEGEN_AUTH_TOKEN_FILE", Path, None,
             "file holding a shared token; calls must send 'authorization: Bearer <token>' (health and "
             "reflection stay open). IMAGEGEN_AUTH_TOKEN gives the token itself"),
        Flag("--engine", "IMAGEGEN_ENGINE", str, ServiceConfig.engine,
             "step: one denoising loop that requests join and leave at every step (mixed steps, guidance "
             "and schedulers share UNet calls); pipeline: whole requests through the diffusers pipeline, "
             "batched when alike", choices=("step", "pipeline")),
        Flag("--cohorts", "IMAGEGEN_COHORTS", boolean, ServiceConfig.cohorts,
             "step engine: rows that arrived together (alike sampler, steps, guidance) are stepped as one "
             "scheduler over their latents stacked; false steps each row alone (the same images, slower)"),
        Flag("--compile", "IMAGEGEN_COMPILE", boolean, ServiceConfig.compile, action="store_true", help=
             "step engine: run each model's UNet (CUDA graphs on CUDA) and VAE decode through torch.compile, "
             "their calls padded to --compile-buckets rows, every bucket warmed before SERVING; other calls "
             "(LoRAs, ControlNet, sizes not in --compile-sizes) run uncompiled"),
        Flag("--compile-buckets", "IMAGEGEN_COMPILE_BUCKETS", buckets, ServiceConfig.compile_buckets,
             "with --compile: the UNet row counts compiled, comma-separated (a guided image is 2 rows); no call "
             "takes more rows than the largest"),
        Flag("--compile-sizes", "IMAGEGEN_COMPILE_SIZES", sizes, ServiceConfig.compile_sizes,
             "with --compile: the image sizes warmed, comma-separated WIDTHxHEIGHT (or one number, square), "
             "each costing a graph per bucket (default: --default-size)"),
        Flag("--compile-cache-dir", "IMAGEGEN_COMPILE_CACHE_DIR", Path, None,
             "with --compile: torch.compile's cache on disk, so a restart reuses it (default: --cache-dir/compile)"),
        Flag("--warmup", "IMAGEGEN_WARMUP", boolean, ServiceConfig.warmup,
             "run one small generation before reporting SERVING"),
        Flag("--log-level", "IMAGEGEN_LOG_LEVEL", str, ServiceConfig.log_level,
             choices=("DEBUG", "INFO", "WARNING", "ERROR")),
    )


def build_parser(mode, environ) -> FlagParser:
    """The flags of `mode` (a core.mode.Mode): its defaults for model and ports come from it."""
    parser = FlagParser(
        hide_prefix="IMAGEGEN_",
        prog=f"python -m services.{mode.name}",
        description=f"Serve {mode.name} image generation over gRPC (imagegen.v1).",
        epilog="Every flag can also be set by its IMAGEGEN_* environment variable (shown in brackets); "
        "a flag wins over the environment.",
    )
    parser.add_flags(serving_flags(mode, environ))
    parser.add_flags(LIMIT_FLAGS + DEFAULT_FLAGS, "limits and defaults (GetInfo reports them)")
    return parser


def load_config(mode, argv=None, environ=None) -> ServiceConfig:
    """The settings of a service of `mode` (a core.mode.Mode) from flags and environment."""
    environ = os.environ if environ is None else environ
    parser = build_parser(mode, environ)
    args = parser.read(argv, environ)
    if args.max_width % 8 or args.size % 8 or not 64 <= args.size <= args.max_width:
        parser.error("--max-size and --default-size must be multiples of 8, with 64 <= default <= max")
    for width, height in args.compile_sizes:
        if width % 8 or height % 8 or not 64 <= min(width, height) <= max(width, height) <= args.max_width:
            parser.error(f"--compile-sizes: {width}x{height}: sides must be multiples of 8 from 64 to --max-size")
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if args.tls_client_ca and not args.tls_cert:
        parser.error("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key")
    if args.model_config is not None and not args.model_config.is_dir():
        parser.error(f"--model-config: {args.model_config} is not a folder")
    if args.models_dir is not None and not args.models_dir.is_dir():
        parser.error(f"--models-dir: {args.models_dir} is not a folder")
    if args.lora_dir is not None and not args.lora_dir.is_dir():
        parser.error(f"--lora-dir: {args.lora_dir} is not a folder")
    if args.embeddings_dir is not None and not args.embeddings_dir.is_dir():
        parser.error(f"--embeddings-dir: {args.embeddings_dir} is not a folder")
    if args.upscaler_dir is not None and not args.upscaler_dir.is_dir():
        parser.error(f"--upscaler-dir: {args.upscaler_dir} is not a folder")
    if args.controlnet_dir is not None and not args.controlnet_dir.is_dir():
        parser.error(f"--controlnet-dir: {args.controlnet_dir} is not a folder")
    for name in ("tls_cert", "tls_key", "tls_client_ca", "auth_token_file"):
        path = getattr(args, name)
        if path is not None and not path.is_file():
            parser.error(f"--{name.replace('_', '-')}: {path} is not a readable file")
    from .rpc.security import read_token

    values = vars(args)
    try:
        token = read_token(values.pop("auth_token_file"), environ.get("IMAGEGEN_AUTH_TOKEN"))
    except ValueError as exc:
        parser.error(f"--auth-token-file: {exc}")
    limits = {flag.name: values.pop(flag.name) for flag in LIMIT_FLAGS}
    defaults = {flag.name: values.pop(flag.name) for flag in DEFAULT_FLAGS}
    defaults["num_inference_steps"] = min(defaults["num_inference_steps"], limits["max_steps"])
    for name in ("model_config", "lora_dir", "embeddings_dir", "upscaler_dir", "models_dir", "controlnet_dir",
                 "cache_dir", "compile_cache_dir"):
        values[name] = values[name].expanduser() if values[name] else None
    return ServiceConfig(
        mode=mode.name,
        **values,  # what is left: serving_flags' settings, by their ServiceConfig names
        auth_token=token,
        limits=Limits(**limits, max_height=limits["max_width"]),
        defaults=Defaults(**defaults),
    )
