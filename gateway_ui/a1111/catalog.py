"""AUTOMATIC1111's catalogue routes (/sdapi/v1/samplers, /loras, /png-info, /memory, ...): what the services
offer, in A1111's shapes, read from each service's GetInfo on every call (so nothing here goes stale).

Sampler and schedule names come from the one mapping between A1111's names and ours (the contract's
SAMPLERS and SCHEDULE_TYPES, read through infotext.sampler_for). Like A1111 1.9+, a sampler is listed
without its schedule ("DPM++ 2M", not "DPM++ 2M Karras") and the schedule types are a list of their own: clients of
1.9+ send sampler_name "DPM++ 2M" + scheduler "Karras", and the generation routes still take the legacy
"DPM++ 2M Karras" that older clients send, without it being listed twice.

A service that cannot be reached gives GetInfo's placeholder (no schedulers, no LoRAs): the lists answer
with what the others offer, never an error. Authentication is the router's (see the API's router builder).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Optional

from fastapi import APIRouter, Request
from pydantic import BaseModel

from imagegen.v1.contract import (AUTOMATIC, RESIZERS, LATENT_UPSCALE_MODES, LEGACY_SAMPLERS, SAMPLERS,
                                  UPSCALE_MODE,
                                  SCHEDULE_TYPES)
from imagegen.v1.infotext import CLIP_SKIP, MASK_MODE, SCHEDULE_TYPE, parse_size, split_infotext
from services.client.infotext import MAX_INFOTEXT, NoParameters, read_infotext

from .errors import field_error
from .mapping import CONTROLNET_SCRIPT, decode_image
from .outpainting import NAME as OUTPAINTING
from .xyz import NAME as XYZ_SCRIPT

if TYPE_CHECKING:
    from ..hub import Hub



# -- A1111's response shapes (modules/api/models.py; the Lora extension's for /loras) ---------------------

class SamplerItem(BaseModel):
    name: str
    aliases: list[str]
    options: dict[str, str]


class SchedulerItem(BaseModel):
    name: str
    label: str
    aliases: Optional[list[str]] = None
    default_rho: Optional[float] = None
    need_inner_model: Optional[bool] = None


class UpscalerItem(BaseModel):
    name: str
    model_name: Optional[str] = None
    model_path: Optional[str] = None
    model_url: Optional[str] = None
    scale: Optional[float] = None


class NameItem(BaseModel):
    name: str


class SDVaeItem(BaseModel):
    model_name: str
    filename: str


class LoraItem(BaseModel):
    name: str
    alias: str
    path: str
    metadata: dict


class PromptStyleItem(BaseModel):
    name: str
    prompt: str | None
    negative_prompt: str | None


class PNGInfoRequest(BaseModel):
    image: str  # base64, with or without a data:image/...;base64, prefix


class PNGInfoResponse(BaseModel):
    info: str
    items: dict
    parameters: dict


class MemoryResponse(BaseModel):
    ram: dict
    cuda: dict


class ScriptsList(BaseModel):
    txt2img: list
    img2img: list


class EmbeddingItem(BaseModel):
    step: int | None = None
    sd_checkpoint: str | None = None
    sd_checkpoint_name: str | None = None
    shape: int
    vectors: int


class EmbeddingsResponse(BaseModel):
    loaded: dict[str, EmbeddingItem]
    skipped: dict[str, EmbeddingItem]


def embedding_lists(infos) -> EmbeddingsResponse:
    """The services' embeddings in A1111's two lists: loaded (into some service's default model) and
    skipped (fitting none: another family's, as A1111 skips those that do not fit its model), by name."""
    loaded, skipped = {}, {}
    for info in infos:
        for embedding in info.embeddings:
            item = EmbeddingItem(step=embedding.step if embedding.HasField("step") else None,
                                 sd_checkpoint=embedding.sd_checkpoint or None,
                                 sd_checkpoint_name=embedding.sd_checkpoint_name or None,
                                 shape=embedding.shape, vectors=embedding.vectors)
            (loaded if embedding.loaded else skipped)[embedding.name] = item
    order = sorted(loaded, key=str.lower)
    return EmbeddingsResponse(loaded={name: loaded[name] for name in order},
                              skipped={name: skipped[name] for name in sorted(skipped, key=str.lower)
                                       if name not in loaded})


# -- samplers and schedule types --------------------------------------------------------------------------

# A1111's own facts about the samplers we have (sd_samplers_kdiffusion / _timesteps / _lcm, 1.9+), in its
# order: aliases, and options as its API writes them (its SamplerItem options are dict[str, str]: pydantic 1
# made "True" of its booleans). Its "scheduler" option, what Automatic means, is the contract's SAMPLERS
# fact, added by sampler_item.
SAMPLER_FACTS: dict[str, tuple[list[str], dict[str, str]]] = {
    "DPM++ 2M": (["k_dpmpp_2m"], {}),
    "DPM++ SDE": (["k_dpmpp_sde"], {"second_order": "True", "brownian_noise": "True"}),
    "DPM++ 2M SDE": (["k_dpmpp_2m_sde"], {"brownian_noise": "True"}),
    "DPM++ 2M SDE Heun": (["k_dpmpp_2m_sde_heun"], {"brownian_noise": "True", "solver_type": "heun"}),
    "DPM++ 3M SDE": (["k_dpmpp_3m_sde"], {"discard_next_to_last_sigma": "True", "brownian_noise": "True"}),
    "Euler a": (["k_euler_a", "k_euler_ancestral"], {"uses_ensd": "True"}),
    "Euler": (["k_euler"], {}),
    "LMS": (["k_lms"], {}),
    "Heun": (["k_heun"], {"second_order": "True"}),
    "DPM2": (["k_dpm_2"], {"discard_next_to_last_sigma": "True", "second_order": "True"}),
    "DPM2 a": (["k_dpm_2_a"], {"discard_next_to_last_sigma": "True", "uses_ensd": "True",
                               "second_order": "True"}),
    "DDIM": (["ddim"], {}),
    "PLMS": (["plms"], {}),
    "UniPC": (["unipc"], {}),
    "LCM": (["k_lcm"], {}),
}
_BY_LABEL = {label: (name, automatic) for name, (label, automatic) in SAMPLERS.items()}

# The schedule types, as A1111's sd_schedulers lists them (name, label, rho, need_inner_model, aliases):
# Automatic, then those the services' samplers take.
AUTOMATIC_ITEM = SchedulerItem(name="automatic", label=AUTOMATIC, default_rho=-1.0, need_inner_model=False)
_SCHEDULE_FACTS = {"uniform": (-1.0, True, None), "karras": (7.0, False, None),
                   "exponential": (-1.0, False, None), "sgm_uniform": (-1.0, True, ["SGMUniform"]),
                   "beta": (-1.0, True, None)}
SCHEDULES = (AUTOMATIC_ITEM, *(
    SchedulerItem(name=name, label=SCHEDULE_TYPES[name], default_rho=rho, need_inner_model=inner,
                  aliases=aliases)
    for name, (rho, inner, aliases) in _SCHEDULE_FACTS.items()))


def upscaler_items(info) -> list[UpscalerItem]:
    """The service's upscalers in A1111's shape: its three resizers as A1111 lists them (scale: its
    UpscalerData default, 4), then each usable model with its architecture and own factor; model_path is
    the file's name, never its folder."""
    items = []
    for upscaler in info.upscalers:
        if upscaler.unusable:
            continue
        if not upscaler.architecture:
            items.append(UpscalerItem(name=upscaler.name, scale=4.0))
        else:
            items.append(UpscalerItem(name=upscaler.name, model_name=upscaler.architecture, model_path=upscaler.file,
                                      scale=float(upscaler.scale)))
    return items


def a1111_sampler(scheduler: str) -> str | None:
    """A1111's sampler name for one of our schedulers (a legacy one: its sampler's, "dpmpp_2m_karras" ->
    "DPM++ 2M"); None for a name the contract does not know."""
    name = LEGACY_SAMPLERS.get(scheduler, (scheduler,))[0]
    return SAMPLERS[name][0] if name in SAMPLERS else None


def sampler_item(label: str) -> SamplerItem:
    """A1111's /samplers entry for one of our samplers' labels."""
    aliases, options = SAMPLER_FACTS.get(label, ([], {}))
    automatic = _BY_LABEL[label][1] if label in _BY_LABEL else "uniform"
    scheduler = {"scheduler": automatic} if automatic != "uniform" else {}
    return SamplerItem(name=label, aliases=aliases, options={**scheduler, **options})


def offered_samplers(schedulers: set[str]) -> list[str]:
    """A1111 sampler names for our scheduler names, each once, in A1111's order (others after)."""
    names = {a1111_sampler(name) for name in schedulers} - {None}
    return [s for s in SAMPLER_FACTS if s in names] + sorted(names - SAMPLER_FACTS.keys())


def offered_schedules(infos) -> list[SchedulerItem]:
    """Automatic (where any sampler is offered) and the schedule types some offered sampler takes
    (GetInfo's samplers), in A1111's order."""
    takes = {schedule for info in infos for sampler in info.samplers for schedule in sampler.schedule_types}
    offered = any(info.samplers or info.schedulers for info in infos)
    return [item for item in SCHEDULES if item.name in takes or (item is AUTOMATIC_ITEM and offered)]


# -- PNG Info ---------------------------------------------------------------------------------------------

# What A1111's parse_generation_parameters fills in for keys an infotext leaves out, where leaving it out
# means the same here (no hires pass, the last CLIP layer, the whole picture...). Those that would claim
# what we do not do (RNG, FP8, VAE tiling) are left out.
ABSENT_MEANS = {
    CLIP_SKIP: "1",
    "Hires resize-1": 0,
    "Hires resize-2": 0,
    "Hires sampler": "Use same sampler",
    "Hires schedule type": "Use same scheduler",
    "Hires checkpoint": "Use same checkpoint",
    "Hires prompt": "",
    "Hires negative prompt": "",
    SCHEDULE_TYPE: "Automatic",
    MASK_MODE: "Inpaint masked",  # the inpaint service writes it only for an inverted mask
}


def generation_parameters(text: str) -> dict[str, Any]:
    """Infotext as A1111's parse_generation_parameters gives it: "Prompt", "Negative prompt", each pair as
    written (WIDTHxHEIGHT values also as "<key>-1" and "<key>-2"), then what absent keys mean."""
    prompt, negative, pairs = split_infotext(text)
    out: dict[str, Any] = {"Prompt": prompt, "Negative prompt": negative}
    for key, value in pairs.items():
        size = parse_size(value)
        if size:
            out[f"{key}-1"], out[f"{key}-2"] = str(size[0]), str(size[1])
        else:
            out[key] = value
    for key, value in ABSENT_MEANS.items():
        out.setdefault(key, value)
    return out


def png_info(body: PNGInfoRequest) -> PNGInfoResponse:
    try:
        text = read_infotext(decode_image(body.image, "image")) or ""
    except NoParameters as err:  # A1111 answers 500 "Invalid encoded image": a bad value is a 422 here
        raise field_error("image", str(err)) from None
    if len(text) > MAX_INFOTEXT:  # as the PNG Info tab: longer than the reader goes is not parsed
        return PNGInfoResponse(info=text[:MAX_INFOTEXT], items={}, parameters={})
    # items: A1111's are the image's other text chunks; the reader skips those unread (a ComfyUI workflow
    # can be megabytes), so none are given.
    return PNGInfoResponse(info=text, items={}, parameters=generation_parameters(text))


# -- the host ---------------------------------------------------------------------------------------------

def memory() -> MemoryResponse:
    """The gateway host's RAM (as A1111: {free, used, total} in bytes, or {error}); the gateway holds no
    GPU, so CUDA is what A1111 reports without one (each service has its own device)."""
    try:
        import psutil  # installed with accelerate; A1111 too reads RAM through it

        vm = psutil.virtual_memory()
        ram = {"free": vm.available, "used": vm.total - vm.available, "total": vm.total}
    except Exception as err:  # noqa: BLE001 - as A1111: what went wrong, in place of the numbers
        ram = {"error": str(err) or type(err).__name__}
    return MemoryResponse(ram=ram, cuda={"error": "unavailable"})


def cmd_flags(request: Request) -> dict[str, Any]:
    """A1111's command-line flags that have an equivalent here, with what this gateway does. Flags that
    would show a path or a credential (ckpt_dir, api_auth, ...) and the services' own are not given."""
    host, port = request.scope.get("server") or ("", None)
    return {
        "api": True,
        "nowebui": False,  # the UI is served on the same port
        # Bound beyond loopback for sure when the request came in on another address (0.0.0.0 otherwise
        # cannot be told apart from 127.0.0.1 here).
        "listen": bool(host) and not host.startswith("127.") and host not in ("::1", "localhost"),
        "port": port,
        "share": False,
        "no_gradio_queue": False,
        "api_server_stop": False,  # no server-kill / server-restart / server-stop routes
    }


# -- the routes -------------------------------------------------------------------------------------------

def add_routes(router: APIRouter, hub: "Hub") -> None:
    """The catalogue routes on `router` (a gateway_ui.hub.Hub's backends give what the services offer)."""

    def infos(rescan: bool = False) -> list:
        """Every mode's GetInfo at once (an unreachable service's placeholder included); `rescan`: each
        service reads its models folder again first."""
        backends = list(hub.backends.values())
        with ThreadPoolExecutor(max(1, len(backends))) as pool:
            return list(pool.map(lambda backend: backend.info(rescan), backends))

    def schedulers() -> set[str]:
        return {name for info in infos() for name in info.schedulers}

    def get(path: str, response_model=None):
        return router.get(path, response_model=response_model)

    @get("/samplers", list[SamplerItem])
    def samplers():
        return [sampler_item(name) for name in offered_samplers(schedulers())]

    @get("/schedulers", list[SchedulerItem])
    def schedule_types():
        return offered_schedules(infos())

    @get("/upscalers", list[UpscalerItem])
    def upscalers():
        return upscaler_items(hub.backends[UPSCALE_MODE].info())

    @get("/latent-upscale-modes", list[NameItem])
    def latent_upscale_modes():
        return [NameItem(name=name) for name in LATENT_UPSCALE_MODES]  # the hires fix's (Txt2ImgRequest.hires)

    @get("/sd-vae", list[SDVaeItem])
    def sd_vae():
        return []  # A1111 lists VAE files found; each checkpoint here brings its own VAE

    @get("/loras", list[LoraItem])
    def loras():
        # The union of what the services list. A1111's path is the file's: here its name (never a path),
        # which is also what a <lora:name:weight> tag takes.
        names = sorted({name for info in infos() for name in info.loras}, key=str.lower)
        return [LoraItem(name=name, alias=name, path=name, metadata={}) for name in names]

    # A1111 rescans its folders and answers null. Here each service rescans its models folder when asked
    # (GetInfo's rescan_models); it lists its LoRA folder on every GetInfo (what /loras reads), and its
    # checkpoints bring their own VAEs: nothing else is left to rescan.
    def refresh_checkpoints() -> None:
        infos(rescan=True)
        return None

    def nothing_to_rescan() -> None:
        return None

    router.add_api_route("/refresh-checkpoints", refresh_checkpoints, methods=["POST"])
    for path in ("/refresh-loras", "/refresh-vae"):
        router.add_api_route(path, nothing_to_rescan, methods=["POST"])

    router.post("/png-info", response_model=PNGInfoResponse)(png_info)
    router.get("/memory", response_model=MemoryResponse)(memory)
    router.get("/cmd-flags")(cmd_flags)

    @get("/scripts", ScriptsList)
    def scripts():
        # The x/y/z plot, and the one alwayson script taken (clients look for it here before sending units)
        return ScriptsList(txt2img=[XYZ_SCRIPT, CONTROLNET_SCRIPT],
                           img2img=[XYZ_SCRIPT, OUTPAINTING.lower(), CONTROLNET_SCRIPT])

    @get("/embeddings", EmbeddingsResponse)
    def embeddings():
        return embedding_lists(infos())

    # What A1111 has and this project does not: empty lists.
    def none_here() -> list:
        return []

    @get("/prompt-styles", list[PromptStyleItem])
    def prompt_styles():
        return [PromptStyleItem(name=s.name, prompt=s.prompt, negative_prompt=s.negative_prompt)
                for s in hub.styles.styles()]

    for path in ("/script-info", "/hypernetworks", "/face-restorers", "/realesrgan-models",
                 "/extensions"):
        router.add_api_route(path, none_here, methods=["GET"], response_model=list)
