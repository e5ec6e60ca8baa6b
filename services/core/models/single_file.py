"""Single-file checkpoints (`.safetensors`, `.ckpt`) in the layout A1111 and Civitai distribute.

The file is read once for its key names and shapes (models/family.py tells the architecture from them),
then diffusers' own single-file loader converts it into the mode's pipeline. The components' configs
(UNet sizes, scheduler, tokenizers) come from `--model-config DIR`, a diffusers folder whose weights are
not needed, or else from the hub repository diffusers picks for the architecture.

`.ckpt` files are pickles: only plain tensors are loaded (torch.load(weights_only=True)); one that needs
to run code to load is refused, never executed.
"""

from __future__ import annotations

import json
import pickle
from inspect import signature
from pathlib import Path

from .family import ModelKind, NotACheckpoint, of_checkpoint

SAFETENSORS = (".safetensors",)
PICKLES = (".ckpt", ".pt", ".pth")
SUFFIXES = SAFETENSORS + PICKLES
# diffusers' legacy single-file rule: an SD 2.x checkpoint at this step is the 512-base (epsilon) model;
# any other is the 768-v (v-prediction) model. Only .ckpt files record their step.
SD2_BASE_GLOBAL_STEP = 875000
SD2_BASE_CONFIG = "stabilityai/stable-diffusion-2-1-base"
# AutoPipeline class (a mode's pipeline_class) -> the name of diffusers' table of concrete classes by model.
AUTO_TABLES = {
    "AutoPipelineForText2Image": "AUTO_TEXT2IMAGE_PIPELINES_MAPPING",
    "AutoPipelineForImage2Image": "AUTO_IMAGE2IMAGE_PIPELINES_MAPPING",
    "AutoPipelineForInpainting": "AUTO_INPAINT_PIPELINES_MAPPING",
}


class CheckpointError(Exception):
    """The file cannot be served; the message says why, on one line."""


def is_checkpoint_path(path: Path) -> bool:
    return path.suffix.lower() in SUFFIXES


def read_header(path: Path) -> tuple[dict[str, tuple], dict]:
    """({key: shape} of the file's tensors, {other top-level entries}). Raises CheckpointError."""
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS:
        from safetensors import safe_open

        try:
            # Reads the JSON header only: no tensor data is loaded here.
            with safe_open(str(path), framework="pt") as f:
                return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}, {}
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own and OS errors alike
            raise CheckpointError(f"not a readable safetensors file ({_first_line(exc)})") from exc
    tensors, extra = _read_pickle(path, mmap=_is_zip(path))
    return {key: tuple(value.shape) for key, value in tensors.items()}, extra


def read_tensors(path: Path) -> dict:
    """{key: tensor} of the file (on the CPU), as read_header reads it: a .ckpt/.pth only as plain tensors.
    Raises CheckpointError."""
    if path.suffix.lower() in SAFETENSORS:
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own and OS errors alike
            raise CheckpointError(f"not a readable safetensors file ({_first_line(exc)})") from exc
    return _read_pickle(path, mmap=False)[0]


def _read_pickle(path: Path, mmap: bool) -> tuple[dict, dict]:
    """({key: tensor}, {other top-level entries}) of a .ckpt/.pt/.pth, never running its code."""
    if path.suffix.lower() not in PICKLES:
        raise CheckpointError(f"not a checkpoint file: expected one of {', '.join(SUFFIXES)}")
    import torch

    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            "refused: this .ckpt needs to run pickled code to load, and only plain tensors are loaded "
            "(convert it to .safetensors)"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for files that are not checkpoints
        raise CheckpointError(f"not a readable .ckpt file ({_first_line(exc)})") from exc
    if not isinstance(loaded, dict):
        raise CheckpointError(f"not a checkpoint: it holds a {type(loaded).__name__}, not a dict of tensors")
    extra = {key: value for key, value in loaded.items() if not isinstance(value, (dict, torch.Tensor))}
    while isinstance(loaded.get("state_dict"), dict):  # as diffusers reads it
        loaded = loaded["state_dict"]
    return {key: value for key, value in loaded.items() if isinstance(value, torch.Tensor)}, extra


def inspect(path: Path) -> tuple[ModelKind, dict]:
    """The checkpoint's kind and its top-level extras (e.g. global_step). Raises CheckpointError."""
    shapes, extra = read_header(path)
    try:
        return of_checkpoint(shapes), extra
    except NotACheckpoint as exc:
        raise CheckpointError(f"not a Stable Diffusion 1.x/2.x/XL checkpoint: {exc}") from exc


def pipeline_class(auto_name: str, kind: ModelKind):
    """The concrete diffusers class for a mode's AutoPipeline class and the checkpoint's family."""
    import diffusers
    from diffusers.pipelines import auto_pipeline

    if auto_name not in AUTO_TABLES:
        return getattr(diffusers, auto_name)  # already concrete
    table = getattr(auto_pipeline, AUTO_TABLES[auto_name])
    return table["stable-diffusion-xl" if kind.family == "sdxl" else "stable-diffusion"]


def check_config_folder(folder: Path, kind: ModelKind) -> None:
    """A --model-config folder must describe the checkpoint's architecture. Raises CheckpointError."""
    index_file = folder / "model_index.json"
    if not index_file.is_file():
        raise CheckpointError(f"--model-config {folder} is not a diffusers model folder (no model_index.json)")
    index = json.loads(index_file.read_text())
    folder_xl = (index.get("text_encoder_2") or [None])[0] is not None
    if folder_xl != (kind.family == "sdxl"):
        raise CheckpointError(f"--model-config {folder} is {'an SDXL' if folder_xl else 'an SD 1.x/2.x'} model "
                              f"but the checkpoint is {kind.family}: give a config folder of the same architecture")
    unet_file = folder / "unet" / "config.json"
    in_channels = json.loads(unet_file.read_text()).get("in_channels", 4) if unet_file.is_file() else None
    want = 9 if kind.inpaint else 4
    if in_channels is not None and in_channels != want:
        raise CheckpointError(f"--model-config {folder} has a UNet of {in_channels} input channels but the "
                              f"checkpoint's takes {want}: give the config of "
                              f"{'an inpainting' if kind.inpaint else 'a non-inpainting'} model")


def hub_config(kind: ModelKind, extra: dict) -> str | None:
    """The hub repository to take configs from when no folder is given; None = diffusers' own choice."""
    if kind.family == "sd2" and not kind.inpaint and extra.get("global_step") == SD2_BASE_GLOBAL_STEP:
        return SD2_BASE_CONFIG
    return None


def load(path: Path, auto_name: str, config_folder: Path | None, dtype, offline: bool):
    """(the pipeline, its kind) for the checkpoint at `path`. Raises CheckpointError."""
    kind, extra = inspect(path)
    if config_folder is not None:
        check_config_folder(config_folder, kind)
        config = str(config_folder)
    else:
        config = hub_config(kind, extra)
    cls = pipeline_class(auto_name, kind)
    # SD 1.x/2.x pipelines take a safety checker; we serve without one, as from folders (SDXL has none).
    accepted = signature(cls.__init__).parameters
    no_checker = {"safety_checker": None, "requires_safety_checker": False} if "safety_checker" in accepted else {}
    try:
        pipe = cls.from_single_file(str(path), config=config, local_files_only=offline, torch_dtype=dtype,
                                    **no_checker)
    except Exception as exc:  # noqa: BLE001 - any loader failure is reported the same way, on one line
        hint = "; offline: give --model-config DIR (a diffusers folder of this architecture)" if (
            offline and config_folder is None) else ""
        raise CheckpointError(f"could not load it as {kind.describe()} ({_first_line(exc)}){hint}") from exc
    return pipe, kind


def _is_zip(path: Path) -> bool:
    import zipfile

    return zipfile.is_zipfile(path)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
