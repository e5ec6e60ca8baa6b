"""The checkpoints a service offers, by name: what GetInfo lists and what GenerationParams.model names.

A name is the checkpoint's file or folder name without its extension ("model" for model.safetensors,
"stable-diffusion-v1-4" for CompVis/stable-diffusion-v1-4, the preset's name for a preset): requests
name entries, never paths. Each entry's short hash (A1111's: the first 10 hex digits of the file's
sha256; a folder's: of its UNet weights file) is computed once, off the request path, by `hash_in_background`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidArgument
from . import presets, single_file
from .family import INPAINT_CHANNELS, ModelKind

log = logging.getLogger(__name__)
HASH_LENGTH = 10  # A1111's "Model hash"
_UNET_WEIGHTS = ("diffusion_pytorch_model*.safetensors", "diffusion_pytorch_model*.bin")


@dataclass(eq=False)
class Entry:
    """One checkpoint: its name, where it loads from, and what is known of it (filled as it is learnt)."""

    name: str
    source: str  # what the loader is given: --model's value, or a path in --models-dir
    is_default: bool = False
    family: str = ""  # "sd1", "sd2", "sdxl"; "" until known
    inpaint: bool = False
    hash: str = ""  # A1111's short hash; "" until computed
    unusable: str = ""  # why the mode cannot use it; "" when it can


def name_of(model: str) -> str:
    """The name requests use for `model` (a preset, a folder, a hub id or a checkpoint file)."""
    if presets.is_preset(model):
        return model
    path = Path(model)
    return path.stem if single_file.is_checkpoint_path(path) else path.name


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def unet_weights(folder: Path) -> Path | None:
    """A diffusers folder's UNet weights file (the first in sorted order, for sharded weights)."""
    for pattern in _UNET_WEIGHTS:
        found = sorted((folder / "unet").glob(pattern))
        if found:
            return found[0]
    return None


def hashed_file(source: str, cache_dir: Path, inpaint_mode: bool) -> Path | None:
    """The file whose sha256 is the model's hash: the checkpoint itself, a folder's UNet weights (an
    embedded preset's: the built folder in the cache; a hub id's: the cached download); None if none."""
    if source in presets.EMBEDDED:
        return unet_weights(presets.tiny_path(cache_dir, inpaint_mode, source))
    local = Path(source).expanduser()
    if local.is_file():
        return local
    if local.is_dir():
        return unet_weights(local)
    try:  # a hub id: its cached UNet weights, if it was downloaded
        from huggingface_hub import try_to_load_from_cache

        for filename in ("unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.bin"):
            cached = try_to_load_from_cache(source, filename)
            if isinstance(cached, str):
                return Path(cached)
    except Exception:  # noqa: BLE001 - not a hub id (or no hub library): no hash
        pass
    return None


def short_hash(source: str, cache_dir: Path, inpaint_mode: bool) -> str:
    """A1111's short hash of `source`. A preset built on the device has no file: a hash of its name and
    mode (its weights are a function of them: seeded), so it still tells the models apart."""
    if source in presets.BUILT_ON_DEVICE:
        text = f"preset {source} inpaint={inpaint_mode}"
        return hashlib.sha256(text.encode()).hexdigest()[:HASH_LENGTH]
    path = hashed_file(source, cache_dir, inpaint_mode)
    return file_sha256(path)[:HASH_LENGTH] if path is not None else ""


def folder_kind(folder: Path) -> ModelKind:
    """A diffusers folder's kind from its configs (no weights read). Raises OSError or ValueError."""
    index = json.loads((folder / "model_index.json").read_text())
    unet = json.loads((folder / "unet" / "config.json").read_text())
    inpaint = unet.get("in_channels") == INPAINT_CHANNELS
    if "text_encoder_2" in index or "XL" in index.get("_class_name", ""):
        return ModelKind("sdxl", inpaint)
    scheduler = folder / "scheduler" / "scheduler_config.json"
    predicts_v = scheduler.is_file() and json.loads(scheduler.read_text()).get("prediction_type") == "v_prediction"
    return ModelKind("sd2" if predicts_v or unet.get("cross_attention_dim") == 1024 else "sd1", inpaint)


def unusable(kind: ModelKind, takes_mask: bool) -> str:
    """Why a mode cannot use a model of `kind` ("" when it can): an inpainting UNet needs a mask."""
    if kind.inpaint and not takes_mask:
        return f"an inpainting UNet ({INPAINT_CHANNELS} input channels) needs a mask: the inpaint service serves it"
    return ""


def scan(folder: Path, takes_mask: bool) -> list[Entry]:
    """Every diffusers folder and single-file checkpoint in `folder`, by name (sorted); anything else is
    skipped with a log line (reading headers only, never weights)."""
    entries: dict[str, Entry] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        try:
            if path.is_dir() and (path / "model_index.json").is_file():
                kind = folder_kind(path)
            elif path.is_file() and single_file.is_checkpoint_path(path):
                kind, _extra = single_file.inspect(path)
            else:
                log.info("models folder: skipped %s (not a diffusers folder nor a %s checkpoint)", path.name,
                         "/".join(single_file.SUFFIXES))
                continue
        except (OSError, ValueError, KeyError, single_file.CheckpointError) as exc:
            log.warning("models folder: skipped %s, not a loadable checkpoint: %s", path.name, exc)
            continue
        name = name_of(str(path))
        if name in entries:
            log.warning("models folder: skipped %s, the name %r is taken by %s", path.name, name,
                        Path(entries[name].source).name)
            continue
        entries[name] = Entry(name, str(path), family=kind.family, inpaint=kind.inpaint,
                              unusable=unusable(kind, takes_mask))
    return list(entries.values())


class Catalog:
    """The service's checkpoints by name, the default first."""

    def __init__(self, entries: list[Entry]):
        self.entries = {entry.name: entry for entry in entries}

    @classmethod
    def single(cls, model: str) -> "Catalog":
        """Today's one model: --model's."""
        return cls([Entry(name_of(model), model, is_default=True)])

    @classmethod
    def build(cls, model: str, models_dir: Path | None, takes_mask: bool) -> "Catalog":
        """--models-dir's checkpoints and --model, which is the default: an entry of the folder when it
        names one (by its name or path), else a model of its own (listed first)."""
        if models_dir is None:
            return cls.single(model)
        found = {entry.name: entry for entry in scan(models_dir, takes_mask)}
        name = name_of(model)
        entry = found.get(name)
        same = entry is not None and not presets.is_preset(model) and (
            model == name or Path(model).expanduser().resolve() == Path(entry.source).resolve())
        if same:
            entry.is_default = True
        else:
            if entry is not None:
                log.warning("models folder: %s is shadowed by --model %s (the same name)", entry.source, model)
            entry = found[name] = Entry(name, model, is_default=True)
        return cls([entry, *(other for other in found.values() if other is not entry)])

    @property
    def default(self) -> Entry:
        return next(entry for entry in self.entries.values() if entry.is_default)

    def names(self) -> list[str]:
        return list(self.entries)

    def by_name(self, name: str) -> Entry | None:
        return self.entries.get(name)

    def choose(self, name: str, field: str = "params.model") -> Entry:
        """The entry a request names ("" = the default). Raises InvalidArgument naming `field`."""
        if not name:
            return self.default
        entry = self.entries.get(name)
        if entry is None:
            from ..checks import quote

            raise InvalidArgument(field, f"unknown model {quote(name)}; this service has "
                                         f"{', '.join(self.names())} (by name, never a path)")
        if entry.unusable:
            raise InvalidArgument(field, f"the model {name!r} cannot be used here: {entry.unusable}")
        return entry

    def hash_in_background(self, cache_dir: Path, inpaint_mode: bool) -> threading.Thread:
        """Compute every entry's short hash once, in a daemon thread (a multi-GB file takes seconds)."""
        def run():
            for entry in list(self.entries.values()):
                if entry.hash:
                    continue
                try:
                    entry.hash = short_hash(entry.source, cache_dir, inpaint_mode)
                except OSError as exc:
                    log.warning("could not hash the model %s (%s): %s", entry.name, entry.source, exc)

        thread = threading.Thread(target=run, name="model-hashes", daemon=True)
        thread.start()
        return thread
