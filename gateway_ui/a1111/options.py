"""/options and /sd-models: A1111's settings, kept per caller, and the models the services serve.

Options are the caller's own (its Basic-auth user; anonymous callers share one set): a user's clip skip or
checkpoint choice changes that user's images, never another's. A1111 has one global set because it has
one process and one job at a time; here many users share the services. Kept in memory (a restart
forgets them, as it forgets nothing else worth keeping: every key GET returns comes back by default).

The keys that mean something here: CLIP_stop_at_last_layers (clip skip) and samples_format (png, jpg,
webp: the images' encoding) apply to the caller's generations; sd_model_checkpoint (a /sd-models title,
name or hash) chooses the caller's checkpoint, loading nothing: each call names it to its mode's service
where that service has it, and runs on the mode's default where it has not (info's sd_model_name and the
infotext say which); a call's own override_settings insists (a 422 when its mode has no such model).
Any other key POSTed is kept and returned as it was.
"""

from __future__ import annotations

import threading

from imagegen.v1.contract import MAX_CLIP_SKIP, MODES

from ..hub import Hub
from .errors import field_error
from .mapping import FORMAT_BY_SAMPLES_FORMAT, whole_number

MAX_KEYS = 512  # options one caller may keep (the whole dict A1111 returns is a few hundred)
CHECKPOINT = "sd_model_checkpoint"
CHECKED = (CHECKPOINT, "CLIP_stop_at_last_layers", "samples_format")  # the keys that mean something here


def title_of(model) -> str:
    """A ModelInfo as /sd-models titles it: "name [hash]" as A1111 does (the name alone until the service
    has hashed the file)."""
    return f"{model.name} [{model.hash}]" if model.hash else model.name


def offered_by(hub: Hub, mode: str) -> list:
    """The usable ModelInfos `mode`'s service lists (GetInfo; none while it cannot be reached)."""
    return [m for m in hub.backends[mode].info().models if not m.unusable] if mode in hub.backends else []


def offered(hub: Hub) -> dict[str, list]:
    """mode -> offered_by(mode), for every mode."""
    return {mode: offered_by(hub, mode) for mode in MODES if mode in hub.backends}


def offered_models(hub: Hub) -> list:
    return [m for models in offered(hub).values() for m in models]


def sd_models(hub: Hub) -> list[dict]:
    """The union of the services' models, each once, defaults first (A1111's SDModelItem fields). The
    filename is the name: no path on a service's machine is shown."""
    seen, models = set(), []
    for model in sorted(offered_models(hub), key=lambda m: not m.is_default):
        if model.name not in seen:
            seen.add(model.name)
            models.append({"title": title_of(model), "model_name": model.name, "hash": model.hash or None,
                           "sha256": None, "filename": model.name, "config": None})
    return models


def _matches(model, wanted: str) -> bool:
    """A1111's clients name a checkpoint by title, by name, or by a title whose hash changed."""
    name = wanted.split(" [", 1)[0].strip()
    for suffix in (".safetensors", ".ckpt"):  # as A1111's validate_model strips it
        name = name.removesuffix(suffix)
    return wanted in (model.name, title_of(model)) or name == model.name or (model.hash and wanted == model.hash)


def model_for(wanted: str, mode: str, hub: Hub, where: str = CHECKPOINT, strict: bool = True) -> str:
    """The name of the model `mode`'s service serves for the checkpoint `wanted` (a title, name or hash).
    strict (a call's own override_settings): a 422 naming `where` when the mode has no such model;
    otherwise (the caller's option) "" there, the mode's default, as a choice made for another mode."""
    mine = offered_by(hub, mode)
    for model in mine:
        if _matches(model, wanted):
            return model.name
    if not strict or not mine:  # not strict: the mode's default; no list: the call meets the outage itself
        return ""
    modes = [m for m, models in offered(hub).items() if any(_matches(x, wanted) for x in models)]
    if modes:
        raise field_error(where, f"{wanted!r} is served for {', '.join(modes)}, not for {mode}")
    raise field_error(where, f"model {wanted!r} not found; GET /sdapi/v1/sd-models lists them")


class Options:
    def __init__(self, hub: Hub, preview_every: int = 0):
        self.hub = hub
        self.preview_every = preview_every
        self._set: dict[str, dict] = {}  # owner -> the keys it set
        self._lock = threading.Lock()

    def explicit(self, owner: str) -> dict:
        """What the caller set (generations apply these; defaults are each service's own)."""
        with self._lock:
            return dict(self._set.get(owner, {}))

    def get(self, owner: str) -> dict:
        """The caller's options: the defaults, then what it set."""
        models = sd_models(self.hub)
        defaults = {
            CHECKPOINT: models[0]["title"] if models else None,
            "sd_checkpoint_hash": None,  # A1111's full sha256; the services give the short one
            "sd_vae": "Automatic",
            "CLIP_stop_at_last_layers": 1,
            "samples_format": "png",
            "live_previews_enable": bool(self.preview_every),
            "show_progress_every_n_steps": self.preview_every or -1,
            "add_model_name_to_info": True,
            "add_model_hash_to_info": False,
        }
        return {**defaults, **self.explicit(owner)}

    def set(self, owner: str, values: dict) -> None:
        """Keep the caller's values: the whole dict a GET returned, or a few keys. Known keys are checked
        (a 422 naming the key, nothing kept); null for one of them is its default again (a GET while no
        service answered gave a null checkpoint, and clients POST that dict back); the rest are kept as
        they are."""
        defaulted = {key for key in CHECKED if key in values and values[key] is None}
        values = {key: value for key, value in values.items() if key not in defaulted}
        if CHECKPOINT in values:
            titles = [model["title"] for model in sd_models(self.hub)]
            chosen = next((m for m in offered_models(self.hub) if _matches(m, str(values[CHECKPOINT]))), None)
            if chosen is None:
                raise field_error(CHECKPOINT, f"model {values[CHECKPOINT]!r} not found; one of {titles}")
            values = {**values, CHECKPOINT: title_of(chosen)}  # GET shows a /sd-models title, as A1111
        if "CLIP_stop_at_last_layers" in values:
            clip_skip = whole_number(values["CLIP_stop_at_last_layers"], "CLIP_stop_at_last_layers")
            if not 1 <= clip_skip <= MAX_CLIP_SKIP:
                raise field_error("CLIP_stop_at_last_layers", f"1..{MAX_CLIP_SKIP}")
        if "samples_format" in values and str(values["samples_format"]).lower() not in FORMAT_BY_SAMPLES_FORMAT:
            raise field_error("samples_format", f"one of {', '.join(FORMAT_BY_SAMPLES_FORMAT)}")
        with self._lock:
            merged = {key: value for key, value in {**self._set.get(owner, {}), **values}.items()
                      if key not in defaulted}
            if len(merged) > MAX_KEYS:
                raise field_error("body", f"at most {MAX_KEYS} options")
            self._set[owner] = merged
