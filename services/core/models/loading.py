"""Loading a mode's pipeline: from the embedded tiny model, a local folder, a Hugging Face id, or a
single-file checkpoint (single_file.py)."""

from __future__ import annotations

import logging
from pathlib import Path

from ..config import ServiceConfig
from ..mode import Mode
from . import single_file
from .loaded import Loaded
from .loras import LoraAdapters
from . import presets
from .presets import EMBEDDED, ensure_tiny

log = logging.getLogger(__name__)


class ModelLoadError(Exception):
    """The model could not be loaded; the message says what was tried, on one line."""


class ModelOutOfMemory(ModelLoadError):
    """The device ran out of memory bringing a model onto it: RESOURCE_EXHAUSTED for the requests that
    need it, while the others go on (the service keeps serving)."""


def is_out_of_memory(exc: BaseException) -> bool:
    """An out-of-memory error, raised as it is or wrapped by the loader (ModelLoadError from it)."""
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, ModelLoadError) and isinstance(exc.__cause__, torch.OutOfMemoryError))


def resolve_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if requested == "cpu":
        return "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelLoadError(f"device {requested} asked for, but CUDA is not available here")
        index = int(requested.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ModelLoadError(
                f"device {requested} asked for, but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
        return f"cuda:{index}"
    raise ModelLoadError(f"unknown device {requested!r}; use cuda:N, cpu or auto")


def resolve_dtype(requested: str, device: str):
    import torch

    if requested == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    return getattr(torch, requested)


def model_source(mode: Mode, config: ServiceConfig) -> tuple[str, str]:
    """(what to pass to from_pretrained, how to describe it in an error)."""
    if config.model in EMBEDDED:
        path = ensure_tiny(config.cache_dir, inpaint=mode.contract.takes_mask, name=config.model)
        return str(path), f"the embedded {config.model} model at {path}"
    local = Path(config.model).expanduser()
    if not local.exists() and single_file.is_checkpoint_path(local):
        raise ModelLoadError(f"the checkpoint file {local} does not exist")
    if local.exists():
        if not (local / "model_index.json").is_file():
            raise ModelLoadError(f"{local} exists but is not a diffusers model folder (no model_index.json)")
        return str(local), f"the local folder {local.resolve()}"
    return config.model, f"{config.model!r} as a local folder (not found) and as a Hugging Face id"


def quiet_libraries() -> None:
    """diffusers and transformers log progress bars and notices we do not want in service logs."""
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def single_file_path(config: ServiceConfig) -> Path | None:
    """The checkpoint file --model names, if it names a file (a folder, preset or hub id: None)."""
    if presets.is_preset(config.model):
        return None
    local = Path(config.model).expanduser()
    return local if local.is_file() else None


def is_offline() -> bool:
    """HF_HUB_OFFLINE (as huggingface_hub reads it): configs may come from the hub cache only."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def load_model(mode: Mode, config: ServiceConfig, on_lora_load=None, embeddings=None, metrics=None) -> Loaded:
    """The model --model names, loaded for `mode`, with what the engines and GetInfo read of it
    (`on_lora_load`: called after each LoRA file loaded onto it), and those of `embeddings` (name ->
    models.embeddings.Embedding) that fit it loaded into its text encoders; under --compile (step
    engine) its UNet and VAE decode compiled and warmed (work.metrics.ServiceMetrics `metrics` counts its calls).
    Raises ModelLoadError."""
    from .catalog import name_of
    from .embeddings import load_into

    pipe, device, dtype = load_pipeline(mode, config)
    name = name_of(config.model)
    compiled = decode = None
    if config.compile and config.engine == "step":
        from ..engine.graphs import compile_model

        compiled, decode = compile_model(pipe, name, config, metrics)
    elif config.compile:
        log.warning("--compile compiles the step engine's UNet and VAE decode calls: the pipeline engine runs "
                    "uncompiled")
    return Loaded(name, pipe, device, str(dtype).removeprefix("torch."),
                  LoraAdapters(pipe, config.lora_dir, on_load=on_lora_load),
                  embeddings=load_into(pipe, embeddings or {}, name), compiled=compiled, compiled_decode=decode)


def load_pipeline(mode: Mode, config: ServiceConfig):
    """Load, place and configure the pipeline for `mode`. Raises ModelLoadError."""
    import diffusers
    import torch

    quiet_libraries()
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    build = presets.BUILT_ON_DEVICE.get(config.model)
    if build is not None:
        log.info("building the %s preset (random weights) for %s on %s (%s)", config.model, config.mode, device,
                 dtype)
        try:
            pipe = build(mode.contract.takes_mask, device, dtype)
        except (RuntimeError, torch.OutOfMemoryError) as exc:
            raise ModelLoadError(f"could not build the {config.model} preset on {device}: {exc}") from exc
        # The mode's own pipeline over the same components (an image-to-image one for img2img).
        pipe = getattr(diffusers, mode.pipeline_class).from_pipe(pipe)
        pipe.set_progress_bar_config(disable=True)
        return pipe, device, dtype
    checkpoint = single_file_path(config)
    if checkpoint is not None:
        log.info("loading the checkpoint %s for %s on %s (%s), configs from %s", checkpoint, config.mode, device,
                 dtype, config.model_config or "the hub")
        try:
            pipe, kind = single_file.load(checkpoint, mode.pipeline_class, config.model_config, dtype, is_offline())
        except single_file.CheckpointError as exc:
            raise ModelLoadError(f"{checkpoint}: {exc}") from exc
        log.info("%s is a %s checkpoint", checkpoint, kind.describe())
    else:
        source, described = model_source(mode, config)
        log.info("loading %s for %s on %s (%s)", described, config.mode, device, dtype)
        try:
            pipe = getattr(diffusers, mode.pipeline_class).from_pretrained(
                source, dtype=dtype, safety_checker=None, requires_safety_checker=False
            )
        except Exception as exc:  # noqa: BLE001 - any loader failure is reported the same way
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(f"could not load {described}: {reason}") from exc
    try:
        pipe = pipe.to(device)
    except (RuntimeError, torch.OutOfMemoryError) as exc:
        raise ModelLoadError(f"could not move the model to {device}: {exc}") from exc
    pipe.set_progress_bar_config(disable=True)
    return pipe, device, dtype
