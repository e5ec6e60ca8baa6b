"""The contract's fixed facts in one small hand-written table, for every side (no torch, no server code).

The generated modules beside this one are never edited; this one names what the .proto leaves to
prose: the three modes (service, stub, request, default port, label), the output formats and fit
modes by name, the documented defaults and default limits, and the structured error reasons.
The client, the gateway, the launcher, the services, the bench and the tests all read it from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import imagegen_pb2 as pb
from . import imagegen_pb2_grpc as pb_grpc

PACKAGE = "imagegen.v1"


@dataclass(frozen=True)
class ModeContract:
    """What every side knows about one generation mode."""

    name: str  # "txt2img": CLI subcommand, module services.<name>, GetInfo's mode
    service: str  # the proto service, "Txt2Img"
    label: str  # what people read: the gateway's tab
    port: int  # default gRPC port
    metrics_port: int  # default Prometheus port
    health_port: int  # default probe port: health and GetInfo only, answered under any load
    request: type  # the request message class
    stub: type
    add_servicer: Callable
    takes_image: bool  # the request has init_image, strength and fit
    takes_mask: bool  # the request has mask_image, mask_blur and invert_mask
    default_strength: float = 0.0  # the documented default when strength is unset (image modes)
    default_mask_blur: int = 0  # the documented default when mask_blur is unset (inpaint)
    default_only_masked_padding: int = 0  # the documented default when only_masked_padding is unset (inpaint)

    @property
    def full_service_name(self) -> str:
        return f"{PACKAGE}.{self.service}"

    @property
    def default_address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def upscales(self) -> bool:
        """Whether the service offers the Upscale RPC (the proto says: Img2Img)."""
        return "Upscale" in pb.DESCRIPTOR.services_by_name[self.service].methods_by_name

    @property
    def uses_upscalers(self) -> bool:
        """Whether the service runs upscaler models: its Upscale RPC, or a hires fix's upscaler (the request
        has `hires`); its operator's --upscaler-dir is for these."""
        return self.upscales or "hires" in self.request.DESCRIPTOR.fields_by_name


TXT2IMG = ModeContract("txt2img", "Txt2Img", "Txt2Img", 50051, 9051, 9061, pb.Txt2ImgRequest,
                       pb_grpc.Txt2ImgStub, pb_grpc.add_Txt2ImgServicer_to_server,
                       takes_image=False, takes_mask=False)
IMG2IMG = ModeContract("img2img", "Img2Img", "Img2Img", 50052, 9052, 9062, pb.Img2ImgRequest,
                       pb_grpc.Img2ImgStub, pb_grpc.add_Img2ImgServicer_to_server,
                       takes_image=True, takes_mask=False, default_strength=0.8)
INPAINT = ModeContract("inpaint", "Inpaint", "Inpainting", 50053, 9053, 9063, pb.InpaintRequest,
                       pb_grpc.InpaintStub, pb_grpc.add_InpaintServicer_to_server,
                       takes_image=True, takes_mask=True, default_strength=1.0, default_mask_blur=4,
                       default_only_masked_padding=32)
MODES: dict[str, ModeContract] = {m.name: m for m in (TXT2IMG, IMG2IMG, INPAINT)}
MODE_NAMES: tuple[str, ...] = tuple(MODES)


def mode(name: str) -> ModeContract:
    try:
        return MODES[name]
    except KeyError:
        raise ValueError(f"unknown mode {name!r}; choose one of {', '.join(MODE_NAMES)}") from None


@dataclass(frozen=True)
class OutputFormat:
    name: str  # "png": the client's and CLI's name
    enum: int  # pb.ImageFormat value
    pil: str  # Pillow's format name
    mime: str
    extension: str  # file extension, without the dot


PNG = OutputFormat("png", pb.IMAGE_FORMAT_PNG, "PNG", "image/png", "png")
JPEG = OutputFormat("jpeg", pb.IMAGE_FORMAT_JPEG, "JPEG", "image/jpeg", "jpg")
WEBP = OutputFormat("webp", pb.IMAGE_FORMAT_WEBP, "WEBP", "image/webp", "webp")
OUTPUT_FORMATS: dict[str, OutputFormat] = {f.name: f for f in (PNG, JPEG, WEBP)}
# Unspecified means PNG.
FORMAT_BY_ENUM: dict[int, OutputFormat] = {pb.IMAGE_FORMAT_UNSPECIFIED: PNG, **{f.enum: f for f in (PNG, JPEG, WEBP)}}
FORMAT_BY_MIME: dict[str, OutputFormat] = {f.mime: f for f in (PNG, JPEG, WEBP)}

# Fit modes by name; FIT_MODE_UNSPECIFIED (None here) means resize when both sides are given, else keep.
FIT_MODES: dict[str, int] = {"resize": pb.FIT_MODE_RESIZE, "crop": pb.FIT_MODE_CROP, "keep": pb.FIT_MODE_KEEP,
                             "fill": pb.FIT_MODE_FILL, "latent": pb.FIT_MODE_LATENT}
FIT_BY_ENUM: dict[int, str | None] = {pb.FIT_MODE_UNSPECIFIED: None, **{v: k for k, v in FIT_MODES.items()}}

# InpaintRequest.masked_content by name (AUTOMATIC1111's "Masked content" words); unspecified means original.
MASKED_CONTENT: dict[str, int] = {"original": pb.MASKED_CONTENT_ORIGINAL, "fill": pb.MASKED_CONTENT_FILL,
                                  "latent noise": pb.MASKED_CONTENT_LATENT_NOISE,
                                  "latent nothing": pb.MASKED_CONTENT_LATENT_NOTHING}
MASKED_CONTENT_BY_ENUM: dict[int, str] = {pb.MASKED_CONTENT_UNSPECIFIED: "original",
                                          **{v: k for k, v in MASKED_CONTENT.items()}}

# InpaintRequest.outpaint.fill by name; unspecified means edge.
OUTPAINT_FILLS: dict[str, int] = {"edge": pb.OUTPAINT_FILL_EDGE, "noise": pb.OUTPAINT_FILL_NOISE,
                                  "mean": pb.OUTPAINT_FILL_MEAN}
OUTPAINT_FILL_BY_ENUM: dict[int, str] = {pb.OUTPAINT_FILL_UNSPECIFIED: "edge", **{v: k for k, v in OUTPAINT_FILLS.items()}}
OUTPAINT_SIDES = ("left", "right", "up", "down")

# Hires fix (Txt2ImgRequest.hires): AUTOMATIC1111's latent upscale modes (its shared.latent_upscale_modes:
# torch.nn.functional.interpolate's mode and antialias), its image resizers, and its defaults.
LATENT_UPSCALE_MODES: dict[str, tuple[str, bool]] = {
    "Latent": ("bilinear", False), "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False), "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False), "Latent (nearest-exact)": ("nearest-exact", False),
}
DEFAULT_HIRES_UPSCALER = "Latent"
DEFAULT_HIRES_SCALE = 2.0
DEFAULT_HIRES_STRENGTH = 0.7
MAX_HIRES_SCALE = 4.0

# Samplers: our name (GenerationParams.scheduler) -> (AUTOMATIC1111's sampler name, the schedule type
# its "Automatic" means: A1111 1.9+'s sd_samplers_kdiffusion "scheduler" option, else the sampler's own
# spacing). Infotext, PNG Info, replay, the gateway and the A1111 API all read these names from here; the
# diffusers class behind each is services/core/models/schedulers.py's. In A1111's order.
SAMPLERS: dict[str, tuple[str, str]] = {
    "dpmpp_2m": ("DPM++ 2M", "karras"),
    "dpmpp_sde": ("DPM++ SDE", "karras"),
    "dpmpp_2m_sde": ("DPM++ 2M SDE", "exponential"),
    "dpmpp_2m_sde_heun": ("DPM++ 2M SDE Heun", "exponential"),
    "dpmpp_3m_sde": ("DPM++ 3M SDE", "exponential"),
    "euler_a": ("Euler a", "uniform"),
    "euler": ("Euler", "uniform"),
    "lms": ("LMS", "uniform"),
    "heun": ("Heun", "uniform"),
    "dpm2": ("DPM2", "karras"),
    "dpm2_a": ("DPM2 a", "karras"),
    "ddim": ("DDIM", "uniform"),
    "pndm": ("PLMS", "uniform"),
    "unipc": ("UniPC", "uniform"),
    "lcm": ("LCM", "uniform"),
}
# Names kept for older requests: each is a sampler with its schedule fixed (A1111's names before 1.9).
LEGACY_SAMPLERS: dict[str, tuple[str, str]] = {"dpmpp_2m_karras": ("dpmpp_2m", "karras")}
# Schedule types (GenerationParams.schedule_type; "" = Automatic, the sampler's own default above) ->
# A1111's labels (sd_schedulers.py), where diffusers has them. "uniform": the sampler's timesteps spaced as
# the model configures them.
SCHEDULE_TYPES: dict[str, str] = {"uniform": "Uniform", "karras": "Karras", "exponential": "Exponential",
                                  "sgm_uniform": "SGM Uniform", "beta": "Beta"}
AUTOMATIC = "Automatic"  # A1111's label of schedule type "" (GenerationParams.schedule_type empty)
# What the gateway picks where a caller names no sampler: A1111's UI default for every family it serves
# (DPM++ 2M, Automatic = Karras). The contract's empty scheduler stays the model's own.
UI_DEFAULT_SAMPLER = "dpmpp_2m"


def resolve_sampler(name: str, schedule_type: str = "") -> tuple[str, str]:
    """(sampler, schedule type) that a request's names mean: a legacy name split, "" made the sampler's
    Automatic. `name` must be a key of SAMPLERS or LEGACY_SAMPLERS."""
    if name in LEGACY_SAMPLERS:
        name, fixed = LEGACY_SAMPLERS[name]
        return name, schedule_type or fixed
    return name, schedule_type or SAMPLERS[name][1]


# Every accepted scheduler name with the A1111 sampler name infotext records for it (legacy ones included).
SCHEDULER_LABELS: dict[str, str] = {name: label for name, (label, _) in SAMPLERS.items()} | {
    legacy: SAMPLERS[name][0] for legacy, (name, _) in LEGACY_SAMPLERS.items()}

MIN_SIZE = 64  # smallest width or height
MAX_SEED = 2**64 - 1
MAX_MASK_BLUR = 64
# InpaintRequest.only_masked_padding: 0..this, AUTOMATIC1111's UI slider's range (its UI's default, 32, is
# INPAINT's).
MAX_ONLY_MASKED_PADDING = 256
# GenerationParams.clip_skip: 1 (the text encoder's last layer) .. the layers of SD 1.x's text encoder.
MAX_CLIP_SKIP = 12
# A LoRA's weight (GenerationParams.loras, a prompt's <lora:name:weight>): -this..this.
MAX_LORA_WEIGHT = 4.0

# ControlNet units (GenerationParams.control): sd-webui-controlnet's labels of the control and resize modes,
# as its API takes them and infotext writes them.
CONTROL_MODE_LABELS: dict[int, str] = {
    pb.CONTROL_MODE_BALANCED: "Balanced",
    pb.CONTROL_MODE_PROMPT: "My prompt is more important",
    pb.CONTROL_MODE_CONTROLNET: "ControlNet is more important",
}
CONTROL_RESIZE_LABELS: dict[int, str] = {
    pb.FIT_MODE_RESIZE: "Just Resize",
    pb.FIT_MODE_CROP: "Crop and Resize",
    pb.FIT_MODE_FILL: "Resize and Fill",
}
DEFAULT_CONTROL_RESIZE = pb.FIT_MODE_CROP  # a unit's resize_mode when unset, the extension's default
MAX_CONTROL_WEIGHT = 2.0
SOFT_INJECTION_BASE = 0.825  # "My prompt is more important": residual i of n scaled by base^(n-1-i)

# What a service uses for unset fields and which limits it applies unless its operator changes them
# (it reports its own in GetInfo; the gateway shows these while a service cannot be reached).
DEFAULTS = pb.Defaults(num_inference_steps=25, guidance_scale=7.5, width=512, height=512, quality=90)
LIMITS = pb.Limits(
    max_width=2048, max_height=2048, max_pixels=2048 * 2048, max_steps=150, max_images=8, max_prompt_chars=4000,
    max_guidance_scale=50.0, max_input_pixels=4096 * 4096,
    # A 2048x2048 RGBA PNG of pure noise is 16 MiB; an inpaint request carries two of them.
    max_message_bytes=64 * 1024 * 1024, max_queue=32, max_batch_images=4,
    max_control_units=3,  # sd-webui-controlnet's default unit count
)


# AUTOMATIC1111's upscalers that are not models, in its order: every service with Upscale offers them.
RESIZERS: tuple[str, ...] = ("None", "Lanczos", "Nearest")
UPSCALE_MODE = next(m.name for m in MODES.values() if m.upscales)  # the one mode that serves Upscale


def placeholder_info(name: str) -> pb.ServiceInfo:
    """The documented defaults and limits of a mode, for showing a form while its service is unreachable."""
    spec = mode(name)
    defaults = pb.Defaults()
    defaults.CopyFrom(DEFAULTS)
    defaults.strength = spec.default_strength
    defaults.mask_blur = spec.default_mask_blur
    defaults.only_masked_padding = spec.default_only_masked_padding
    return pb.ServiceInfo(mode=name, defaults=defaults, limits=LIMITS,
                          output_formats=[f.enum for f in OUTPUT_FORMATS.values()],
                          max_clip_skip=MAX_CLIP_SKIP,
                          upscalers=[pb.UpscalerInfo(name=n) for n in RESIZERS])


# Errors: every status the services send carries a google.rpc.ErrorInfo detail in this domain whose
# reason says what happened, so clients never read message text. INVALID_ARGUMENT also carries
# google.rpc.BadRequest (the fields), a full queue google.rpc.RetryInfo and trailing RETRY_AFTER_KEY.
ERROR_DOMAIN = PACKAGE
RETRY_AFTER_KEY = "retry-after-ms"


class Reason:
    INVALID_ARGUMENT = "INVALID_ARGUMENT"  # a request field is wrong (see BadRequest)
    QUEUE_FULL = "QUEUE_FULL"  # retry after RetryInfo's delay
    OUT_OF_MEMORY = "OUT_OF_MEMORY"  # the device ran out of memory: ask for less
    MODEL_LOADING = "MODEL_LOADING"  # not serving yet: retry shortly
    SHUTTING_DOWN = "SHUTTING_DOWN"  # draining: retry on another replica
    DEADLINE_UNMEETABLE = "DEADLINE_UNMEETABLE"  # refused before any work: the deadline cannot be met
    DEADLINE_PASSED = "DEADLINE_PASSED"  # the deadline passed while the request waited
    CANCELLED = "CANCELLED"  # the client went away
    UNAUTHENTICATED = "UNAUTHENTICATED"  # missing or wrong token
    INTERNAL = "INTERNAL"  # a failure of the service, not of the request


def guided(guidance_scale: float) -> bool:
    """Whether a request runs classifier-free guidance (an unconditional and a conditional UNet row per
    image): only above 1, as diffusers decides."""
    return guidance_scale > 1
