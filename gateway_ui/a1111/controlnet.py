"""sd-webui-controlnet's API: `alwayson_scripts.controlnet.args` units on /txt2img and /img2img, and its
routes /controlnet/version, /model_list, /module_list, /control_types, /settings and /detect.

Units are read as the extension's ControlNetUnit takes them (scripts/api.py, internal_controlnet/args.py):
its field names and defaults, `input_image` for `image` and `guidance` for `guidance_end` (legacy), the
image as base64 or {"image": ..., "mask": ...}, the resize and control modes by label or legacy integer,
`low_vram`, `hr_option` and `save_detected_map` accepted and ignored. A disabled unit is skipped. As the
extension does, a preprocessor parameter it does not have, -1, or one outside its slider is its default
(webuiapi sends 512/64/64 for every module). Anything else wrong is a 422 naming the field
(`alwayson_scripts.controlnet.args.0.weight`, the script's key as the caller wrote it); what a service refuses comes back naming the same field.
"""

from __future__ import annotations

import base64
import math
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Body, Depends
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import CONTROL_MODE_LABELS, CONTROL_RESIZE_LABELS, MAX_CONTROL_WEIGHT
from services.client import ModelLoading, ShuttingDown, Unreachable

from .. import control_catalog as catalog
from ..backend import GenerationError
from .access import owner_dependency
from .errors import ApiError, field_error, from_generation
from .mapping import CONTROLNET_SCRIPT, a1111_field, decode_image
from .routing import MB, route_class

if TYPE_CHECKING:
    from ..hub import Hub

API_VERSION = 2  # external_code.get_api_version()
# Legacy integers and old labels of the two modes (external_code.resize_mode_from_value, control_mode_...).
RESIZE_BY_VALUE: dict[Any, int] = {**{label: enum for enum, label in CONTROL_RESIZE_LABELS.items()},
                                   0: pb.FIT_MODE_RESIZE, 1: pb.FIT_MODE_CROP, 2: pb.FIT_MODE_FILL,
                                   3: pb.FIT_MODE_RESIZE,  # "Just Resize (Latent upscale)": a plain resize
                                   "Inner Fit (Scale to Fit)": pb.FIT_MODE_CROP,
                                   "Scale to Fit (Inner Fit)": pb.FIT_MODE_CROP,
                                   "Outer Fit (Shrink to Fit)": pb.FIT_MODE_FILL,
                                   "Envelope (Outer Fit)": pb.FIT_MODE_FILL}
CONTROL_BY_VALUE: dict[Any, int] = {**{label: enum for enum, label in CONTROL_MODE_LABELS.items()},
                                    0: pb.CONTROL_MODE_BALANCED, 1: pb.CONTROL_MODE_PROMPT,
                                    2: pb.CONTROL_MODE_CONTROLNET}
LEGACY_KEYS = {"input_image": "image", "guidance": "guidance_end", "lowvram": "low_vram"}
NO_MODEL = ("", "None", "none")
# The extension's control types (global_state.preprocessor_filters) with the words that pick their
# preprocessors and models (preprocessor_filters_aliases), and the preprocessor each starts with.
CONTROL_TYPES = {"All": ((), "none"), "Canny": (("canny",), "canny"), "Depth": (("depth",), "depth_midas"),
                 "NormalMap": (("normalmap", "normal"), "normal_bae"),
                 "OpenPose": (("openpose", "densepose"), "openpose_full"), "MLSD": (("mlsd",), "mlsd"),
                 "Lineart": (("lineart",), "lineart_standard"), "SoftEdge": (("softedge",), "softedge_pidinet"),
                 "Scribble/Sketch": (("scribble/sketch", "scribble", "sketch"), "scribble_pidinet"),
                 "Segmentation": (("segmentation", "seg"), "seg_ofade20k"), "Shuffle": (("shuffle",), "shuffle"),
                 "Tile/Blur": (("tile/blur", "tile", "blur"), "tile_resample"),
                 "Inpaint": (("inpaint",), "inpaint_only")}


# -- units ------------------------------------------------------------------------------------------------

def script_args(req) -> tuple[str, list] | None:
    """(where the controlnet script's args are, as the caller wrote its alwayson_scripts key, in any case:
    "alwayson_scripts.ControlNet.args"; the args); None without it."""
    for name, value in (req.alwayson_scripts or {}).items():
        if name.lower() == CONTROLNET_SCRIPT:
            where = f"alwayson_scripts.{name}.args"
            args = value.get("args") if isinstance(value, dict) else None
            if not isinstance(args, list):
                raise field_error(where, "a list of ControlNet units")
            return where, args
    return None


def _number(value, where: str, least: float, most: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise field_error(where, "a number")
    if not least <= value <= most:
        raise field_error(where, f"must be {least:g}..{most:g}, got {value:g}")
    return float(value)


def _flag(value, where: str) -> bool:
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    raise field_error(where, "true or false")


def _enum(value, table: dict, where: str) -> int:
    key = value if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    if key not in table:
        labels = ", ".join(repr(k) for k in table if isinstance(k, str))
        raise field_error(where, f"{str(value)[:60]!r} is not one of {labels} (or 0, 1, 2)")
    return table[key]


def _image(value, where: str) -> bytes | None:
    """A unit's image: base64, or {"image": base64, "mask": base64} (a mask is not used here)."""
    if isinstance(value, dict):
        if value.get("mask"):
            raise field_error(f"{where}.mask", "a mask on a ControlNet unit is not supported here")
        value, where = value.get("image"), f"{where}.image"
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise field_error(where, "a base64 image")
    return decode_image(value, where)


def _param(unit: dict, name: str, params: dict, where: str) -> float | None:
    """A preprocessor parameter: its default (unset) where the extension would reset it."""
    value = unit.get(name, -1)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise field_error(f"{where}.{name}", "a number")
    param = params.get(name)
    if param is None or value == -1 or not param.min <= value <= param.max:
        return None
    return value


def read_unit(raw, where: str, info: pb.ServiceInfo) -> pb.ControlUnit | None:
    """One unit of the args (`where` names it); None when disabled."""
    if not isinstance(raw, dict):
        raise field_error(where, "a ControlNet unit (an object)")
    unit = {}
    for key, value in raw.items():
        if key in LEGACY_KEYS:
            if LEGACY_KEYS[key] in raw:
                raise field_error(f"{where}.{key}", f"give {LEGACY_KEYS[key]!r} or its old name {key!r}, not both")
            key = LEGACY_KEYS[key]
        unit[key] = value
    # The extension's API default is enabled; webuiapi sends the flag.
    if not _flag(unit.get("enabled", True), f"{where}.enabled"):
        return None
    if unit.get("mask") or unit.get("mask_image"):
        raise field_error(f"{where}.mask", "a mask on a ControlNet unit is not supported here")
    module = unit.get("module") or catalog.NONE
    if not isinstance(module, str):
        raise field_error(f"{where}.module", "a preprocessor name")
    offered = catalog.preprocessors(info)
    name = catalog.preprocessor_name(module)
    if name not in offered:
        raise field_error(f"{where}.module", f"module({module}) not found in supported modules: "
                                             f"{', '.join(offered)}")
    start = _number(unit.get("guidance_start", 0.0), f"{where}.guidance_start", 0, 1)
    end = _number(unit.get("guidance_end", 1.0), f"{where}.guidance_end", 0, 1)
    if start >= end:
        raise field_error(f"{where}.guidance_start", f"guidance_start ({start:g}) must be below guidance_end ({end:g})")
    message = pb.ControlUnit(
        preprocessor=name,
        weight=_number(unit.get("weight", 1.0), f"{where}.weight", 0, MAX_CONTROL_WEIGHT),
        guidance_start=start, guidance_end=end,
        control_mode=_enum(unit.get("control_mode", 0), CONTROL_BY_VALUE, f"{where}.control_mode"),
        resize_mode=_enum(unit.get("resize_mode", 1), RESIZE_BY_VALUE, f"{where}.resize_mode"),
        pixel_perfect=_flag(unit.get("pixel_perfect", False), f"{where}.pixel_perfect"))
    image = _image(unit.get("image"), f"{where}.image")
    if image is not None:
        message.image.data = image
    for field in catalog.PARAM_FIELDS:
        value = _param(unit, field, offered[name], where)
        if value is not None:
            setattr(message, field, int(value) if field == "processor_res" else value)
    # The model last: a unit's own mistakes are named even while the service lists no ControlNet.
    model = unit.get("model")
    if not isinstance(model, str) or model in NO_MODEL:
        raise field_error(f"{where}.model", "a ControlNet model (GET /controlnet/model_list lists them)")
    found = catalog.find_model(info, model)
    if found is None:
        have = ", ".join(catalog.model_title(cn) for cn in info.controlnets) or "none (start the service with "\
               "--controlnet-dir DIR)"
        raise field_error(f"{where}.model", f"model({model}) not found; the {info.mode or 'mode'}'s service "
                                            f"has: {have}")
    message.model = found
    return message


def read_units(req, info: pb.ServiceInfo) -> tuple[list[pb.ControlUnit], list[str]]:
    """(the enabled units, where each is in the request: "alwayson_scripts.controlnet.args.1") of a request,
    for the service whose GetInfo is `info`."""
    found = script_args(req)
    if found is None:
        return [], []
    where, args = found
    units, places = [], []
    for i, raw in enumerate(args):
        unit = read_unit(raw, f"{where}.{i}", info)
        if unit is not None:
            units.append(unit)
            places.append(f"{where}.{i}")
    most = info.limits.max_control_units
    if most and len(units) > most:
        raise field_error(where, f"at most {most} enabled ControlNet units, got {len(units)}")
    return units, places


def field_namer(places: list[str]):
    """A service's field path -> A1111's, with params.control[i] named as the i-th enabled unit's place."""
    def name(contract_field: str) -> str:
        head, bracket, rest = contract_field.partition("params.control[")
        if head == "" and bracket:
            index, _, tail = rest.partition("]")
            if index.isdigit() and int(index) < len(places):
                return places[int(index)] + tail
        return a1111_field(contract_field)
    return name


# -- routes -----------------------------------------------------------------------------------------------

def _infos(hub: "Hub") -> list[pb.ServiceInfo]:
    return [backend.info() for backend in hub.backends.values()]


def model_list(infos) -> list[str]:
    titles = []
    for info in infos:
        titles += [catalog.model_title(cn) for cn in info.controlnets if catalog.model_title(cn) not in titles]
    return titles


def module_lists(infos, alias_names: bool) -> dict:
    """module_list and module_detail: the services' preprocessors (their union, "none" first)."""
    offered: dict = {}
    for info in infos:
        for name, params in catalog.preprocessors(info).items():
            offered.setdefault(name, params)
    shown = {name: catalog.ALIASES.get(name, name) if alias_names else name for name in offered}
    return {"module_list": list(shown.values()),
            "module_detail": {shown[name]: {"model_free": False, "sliders": catalog.sliders(params)}
                              for name, params in offered.items()}}


def control_types(infos) -> dict:
    modules, models = module_lists(infos, False)["module_list"], model_list(infos)
    out = {}
    for label, (words, default) in CONTROL_TYPES.items():
        def picked(text: str) -> bool:
            return not words or any(word in text.lower() for word in words)
        found = [m for m in modules if m == catalog.NONE or picked(m)]
        found_models = ["None", *(m for m in models if picked(m))]
        out[label] = {"module_list": found, "model_list": found_models,
                      "default_option": default if default in found else found[0],
                      "default_model": found_models[1] if len(found_models) > 1 else "None"}
    return {"control_types": out}


def detect(hub: "Hub", body: dict) -> dict:
    """POST /controlnet/detect: each image's map from the Preprocess RPC of the first service that answers."""
    images = body.get("controlnet_input_images") or body.get("controlnet_images") or []
    key = "controlnet_input_images" if body.get("controlnet_input_images") else "controlnet_images"
    module = body.get("controlnet_module", catalog.NONE)
    if not isinstance(images, list) or not images:
        raise ApiError(422, "No image selected")
    if not isinstance(module, str):
        raise field_error("controlnet_module", "a preprocessor name")
    backends = list(hub.backends.values())
    info = next((i for i in (b.info() for b in backends) if i.preprocessors), backends[0].info())
    name = catalog.preprocessor_name(module)
    params = catalog.preprocessors(info).get(name)
    if params is None:
        raise ApiError(422, "Module not available")
    unit = pb.ControlUnit(preprocessor=name)
    for field in catalog.PARAM_FIELDS:
        value = _param({field: body.get(f"controlnet_{field}", -1)}, field, params, "controlnet")
        if value is not None:
            setattr(unit, field, int(value) if field == "processor_res" else value)
    out = []
    for i, text in enumerate(images):
        if not isinstance(text, str):
            raise field_error(f"{key}.{i}", "a base64 image")
        unit.image.data = decode_image(text, f"{key}.{i}")
        out.append(base64.b64encode(_preprocess(backends, unit, f"{key}.{i}")).decode())
    return {"images": out, "info": "Success"}


# The Preprocess request's fields as /detect names them.
_DETECT_FIELDS = {"unit.preprocessor": "controlnet_module", "unit.processor_res": "controlnet_processor_res",
                  "unit.threshold_a": "controlnet_threshold_a", "unit.threshold_b": "controlnet_threshold_b"}


def _preprocess(backends, unit: pb.ControlUnit, where: str) -> bytes:
    """The map from the first service that answers (every service has the same preprocessors: a stopped
    one is passed over); a refusal names /detect's field (`where`: the image's)."""
    failure = None
    for backend in backends:
        try:
            return backend.preprocess(unit).data
        except GenerationError as err:
            if isinstance(err.cause, (Unreachable, ShuttingDown, ModelLoading)):
                failure = failure or err
                continue
            raise from_generation(err, lambda f: where if f.startswith("unit.image") else _DETECT_FIELDS.get(f, f)) \
                from None
    raise from_generation(failure, lambda f: f)


def build_router(hub: "Hub", credentials: tuple = (), max_body_mb: float = 32.0) -> APIRouter:
    """The extension's routes (at /controlnet, beside /sdapi/v1), under the same access and error shapes."""
    owner = owner_dependency(credentials)
    router = APIRouter(prefix="/controlnet", tags=["sd-webui-controlnet API"], dependencies=[Depends(owner)],
                       route_class=route_class(int(max_body_mb * MB)), default_response_class=JSONResponse)

    @router.get("/version")
    def version() -> dict:
        return {"version": API_VERSION}

    @router.get("/model_list")
    def get_model_list(update: bool = True) -> dict:
        return {"model_list": model_list(_infos(hub))}

    @router.get("/module_list")
    def get_module_list(alias_names: bool = False) -> dict:
        return module_lists(_infos(hub), alias_names)

    @router.get("/control_types")
    def get_control_types() -> dict:
        return control_types(_infos(hub))

    @router.get("/settings")
    def settings() -> dict:
        return {"control_net_unit_count": max((i.limits.max_control_units for i in _infos(hub)), default=0)}

    @router.post("/detect")
    async def post_detect(body: dict = Body(...)) -> dict:  # noqa: B008 - FastAPI's way
        return await run_in_threadpool(detect, hub, body)

    return router
