"""The checkpoints a service offers, by name: what GetInfo lists and what GenerationParams.model names.

A name is the checkpoint's file or folder name without its extension ("model" for model.safetensors,
"stable-diffusion-v1-4" for CompVis/stable-diffusion-v1-4, the preset's name for a preset): requests
name entries, never paths. Each entry's short hash (A1111's: the first 10 hex digits of the file's
sha256; a folder's: of its UNet weights file) is computed once, off the request path, by `hash_in_background`.

`rescan` reads the folder again while the service runs (GetInfo's rescan_models, SIGHUP). The entries
dict is replaced whole, never changed in place, so readers take a snapshot without a lock; choosing an
entry for a call (`using`) and the rescan's merge share one lock, so a vanished checkpoint that a call
has just chosen stays listed until that call is done.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

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
    stamp: tuple = ()  # (mtime_ns, size) of its hashed file when scanned; () for --model's own entry
    # Facts the request checks need, learnt from its configs at scan or from the model once loaded:
    max_clip_skip: int = 0  # its text encoders' layers (Loaded.max_clip_skip); 0 until known
    tokenizer: Any = None  # its (first) tokenizer, for prompt chunk counts; None until known
    users: int = 0  # calls that chose it and are not done (checked, queued or running)
    removed: bool = False  # gone from the folder, listed until its users are done

    def learn(self, loaded) -> None:
        """Record what loading showed (kept after the model leaves memory): family, layers, tokenizer."""
        from ..prompts import text_encoders

        self.family, self.inpaint = loaded.family, loaded.kind.inpaint
        self.max_clip_skip = loaded.max_clip_skip
        self.tokenizer = text_encoders(loaded.pipe)[0][0]


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


def folder_clip_layers(folder: Path) -> int:
    """The fewest hidden layers of a diffusers folder's text encoders, from their configs (0: unknown)."""
    layers = []
    for name in ("text_encoder", "text_encoder_2"):
        config = folder / name / "config.json"
        if config.is_file():
            layers.append(json.loads(config.read_text()).get("num_hidden_layers", 0))
    return min(layers) if layers and all(layers) else 0


def stamp_of(path: Path) -> tuple:
    """What tells a changed checkpoint: (mtime_ns, size) of the file its hash is of (a folder: its UNet
    weights, else its model_index.json)."""
    target = path if path.is_file() else (unet_weights(path) or path / "model_index.json")
    info = target.stat()
    return info.st_mtime_ns, info.st_size


def unusable(kind: ModelKind, takes_mask: bool) -> str:
    """Why a mode cannot use a model of `kind` ("" when it can): an inpainting UNet needs a mask."""
    if kind.inpaint and not takes_mask:
        return f"an inpainting UNet ({INPAINT_CHANNELS} input channels) needs a mask: the inpaint service serves it"
    return ""


def scan(folder: Path, takes_mask: bool, known: dict[str, Entry] | None = None) -> list[Entry]:
    """Every diffusers folder and single-file checkpoint in `folder`, by name (sorted); anything else is
    skipped with a log line (reading headers only, never weights). An entry of `known` whose file is
    unchanged (same path, mtime and size) is reused as it is, its hash and learnt facts kept."""
    known = known or {}
    entries: dict[str, Entry] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        is_folder = path.is_dir() and (path / "model_index.json").is_file()
        if not (is_folder or path.is_file() and single_file.is_checkpoint_path(path)):
            log.info("models folder: skipped %s (not a diffusers folder nor a %s checkpoint)", path.name,
                     "/".join(single_file.SUFFIXES))
            continue
        name = name_of(str(path))
        if name in entries:
            log.warning("models folder: skipped %s, the name %r is taken by %s", path.name, name,
                        Path(entries[name].source).name)
            continue
        try:
            stamp = stamp_of(path)
            old = known.get(name)
            if old is not None and not old.removed and old.source == str(path) and old.stamp == stamp:
                entries[name] = old
                continue
            if is_folder:
                kind, layers = folder_kind(path), folder_clip_layers(path)
            else:
                (kind, _extra), layers = single_file.inspect(path), 0  # its layers: known once loaded
        except (OSError, ValueError, KeyError, single_file.CheckpointError) as exc:
            log.warning("models folder: skipped %s, not a loadable checkpoint: %s", path.name, exc)
            continue
        entries[name] = Entry(name, str(path), family=kind.family, inpaint=kind.inpaint,
                              unusable=unusable(kind, takes_mask), stamp=stamp, max_clip_skip=layers)
    return list(entries.values())


@dataclass
class Rescanned:
    """What a rescan changed, by name."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # vanished, listed until the calls using them are done

    def describe(self) -> str:
        parts = [f"{what} {', '.join(names)}" for what, names in (
            ("added", self.added), ("removed", self.removed), ("changed", self.changed),
            ("vanished but in use", self.kept)) if names]
        return "; ".join(parts) or "no change"


class Catalog:
    """The service's checkpoints by name, the default first."""

    def __init__(self, entries: list[Entry], models_dir: Path | None = None, takes_mask: bool = False):
        # Replaced whole (never changed in place): a reader's `catalog.entries` is a consistent snapshot.
        self.entries = {entry.name: entry for entry in entries}
        self.models_dir, self.takes_mask = models_dir, takes_mask
        self._lock = threading.Lock()  # choosing for a call (users) against a rescan's merge
        self._rescanning = threading.Lock()  # one rescan at a time

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
        others = [other for other in found.values() if other is not entry]
        return cls([entry, *others], models_dir, takes_mask)

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

    @contextmanager
    def using(self, name: str, field: str = "params.model"):
        """The entry a call names (as `choose`), counted as in use until the block ends: a rescan keeps
        it listed meanwhile even if its file vanished, and drops it after."""
        with self._lock:
            entry = self.choose(name, field)
            entry.users += 1
        try:
            yield entry
        finally:
            with self._lock:
                entry.users -= 1
                if entry.removed and not entry.users and self.entries.get(entry.name) is entry:
                    self.entries = {n: e for n, e in self.entries.items() if e is not entry}
                    log.info("models folder: %s is no longer listed (its file vanished, its last call is "
                             "done)", entry.name)

    def rescan(self, on_drop: Callable[[str], None] | None = None) -> Rescanned:
        """Read --models-dir again: new checkpoints are listed (headers only), changed ones become new
        entries (facts re-read, hash to recompute), vanished ones leave the list unless they are the
        default (loaded, and what the checks fall back on) or in use by calls (listed as unusable until
        those are done). `on_drop(name)` is called, under the lock, for each entry dropped or replaced
        that no call uses, so its weights can leave memory (its next use loads the new file)."""
        done = Rescanned()
        if self.models_dir is None:
            return done
        with self._rescanning:
            # Headers of new or changed files only, outside the lock: calls are chosen meanwhile.
            found = {entry.name: entry for entry in scan(self.models_dir, self.takes_mask, self.entries)}
            with self._lock:
                current, default = self.entries, self.default
                merged: dict[str, Entry] = {}
                if default.stamp and default.name in found:  # the default is one of the folder's
                    fresh = found.pop(default.name)
                    fresh.is_default = True
                    merged[default.name] = fresh
                    if fresh is not default:
                        done.changed.append(default.name)
                else:
                    if default.stamp:
                        log.warning("models folder: the default model %s vanished; it stays (it is loaded)",
                                    default.name)
                    elif default.name in found:
                        log.warning("models folder: %s is shadowed by --model %s (the same name)",
                                    found.pop(default.name).source, default.source)
                    merged[default.name] = default
                for name, entry in found.items():
                    merged[name] = entry
                    old = current.get(name)
                    if old is None or old.removed:
                        done.added.append(name)
                    elif old is not entry:
                        done.changed.append(name)
                        if not old.users and on_drop is not None:
                            on_drop(name)
                for name, old in current.items():
                    if name in merged:
                        continue
                    if old.users:
                        old.removed, old.unusable = True, "its file was removed from the models folder"
                        merged[name] = old
                        done.kept.append(name)
                    else:
                        done.removed.append(name)
                        if on_drop is not None:
                            on_drop(name)
                self.entries = merged
        return done

    def hash_in_background(self, cache_dir: Path, inpaint_mode: bool, names: list[str] | None = None
                           ) -> threading.Thread:
        """Compute the short hash of every entry (or those `names`) lacking one, once, in a daemon thread
        (a multi-GB file takes seconds)."""
        entries = [e for e in self.entries.values() if names is None or e.name in names]

        def run():
            for entry in entries:
                if entry.hash:
                    continue
                try:
                    entry.hash = short_hash(entry.source, cache_dir, inpaint_mode)
                except OSError as exc:
                    log.warning("could not hash the model %s (%s): %s", entry.name, entry.source, exc)

        thread = threading.Thread(target=run, name="model-hashes", daemon=True)
        thread.start()
        return thread
