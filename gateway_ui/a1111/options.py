"""/options and /sd-models: A1111's settings, kept per caller, and the models the services serve.

Options are the caller's own (its Basic-auth user; anonymous callers share one set): a user's clip skip or
checkpoint choice changes that user's images, never another's. A1111 has one global set because it has
one process and one job at a time; here many users share the services. Kept in memory (a restart
forgets them, as it forgets nothing else worth keeping: every key GET returns comes back by default).

The keys that mean something here: CLIP_stop_at_last_layers (clip skip) and samples_format (png, jpg,
webp: the images' encoding) apply to the caller's generations; sd_model_checkpoint must be a /sd-models
title and is returned as set, but each mode's service serves its own model, so a call runs on its mode's
model (info's sd_model_name and the infotext say which); only a call's own override_settings insists on
one (a 422 when its mode serves another). Any other key POSTed is kept and returned as it was.
"""

from __future__ import annotations

import threading
from pathlib import PurePosixPath

from imagegen.v1.contract import MAX_CLIP_SKIP, MODES

from ..hub import Hub
from .errors import field_error
from .mapping import FORMAT_BY_SAMPLES_FORMAT, whole_number

MAX_KEYS = 512  # options one caller may keep (the whole dict A1111 returns is a few hundred)
CHECKPOINT = "sd_model_checkpoint"
CHECKED = (CHECKPOINT, "CLIP_stop_at_last_layers", "samples_format")  # the keys that mean something here


def model_title(model: str) -> str:
    """A model as /sd-models titles it: the last part of GetInfo's model (a Hugging Face id, a folder on
    the service's machine, or "tiny"), so no service's path is shown. No hash yet: title = name."""
    return PurePosixPath(model.replace("\\", "/")).name or model


def sd_models(hub: Hub) -> list[dict]:
    """Every service's model once, in mode order (A1111's SDModelItem fields)."""
    seen, models = set(), []
    for title in served(hub).values():
        if title and title not in seen:
            seen.add(title)
            models.append({"title": title, "model_name": title, "hash": None, "sha256": None,
                           "filename": title, "config": None})
    return models


def served(hub: Hub) -> dict[str, str]:
    """mode -> the title of the model its service serves ("" while it cannot be reached)."""
    return {mode: model_title(hub.backends[mode].info().model) for mode in MODES if mode in hub.backends}


def check_checkpoint(title, mode: str, hub: Hub, where: str = CHECKPOINT) -> None:
    """A checkpoint a call asks for must be the one its mode's service serves (each serves its own)."""
    by_mode = served(hub)
    if title == by_mode.get(mode):
        return
    modes = [m for m, t in by_mode.items() if t == title]
    if modes:
        raise field_error(where, f"{title!r} is served for {', '.join(modes)}; {mode} serves {by_mode.get(mode)!r}")
    raise field_error(where, f"model {title!r} not found; GET /sdapi/v1/sd-models lists them")


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
            "sd_checkpoint_hash": None,
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
            if values[CHECKPOINT] not in titles:
                raise field_error(CHECKPOINT, f"model {values[CHECKPOINT]!r} not found; one of {titles}")
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
