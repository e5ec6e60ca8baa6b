"""Replaying an image: its infotext made into the request that makes it again.

The same service and model give the same pixels: every field the infotext records is sent as recorded
(the seed, steps, guidance, size, scheduler, strength, mask blur, resize mode, inpaint area and padding,
masked content), and nothing is left to defaults that
could differ. What cannot be followed is a ReplayError naming it; what may differ is a warning.
"""

from __future__ import annotations

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import mode as mode_contract
from imagegen.v1.infotext import CFG_SCALE

from .control import unit_from_entry
from .infotext import Parameters, prompt_lora_names
from .requests import make_request


class ReplayError(ValueError):
    """Parameters that cannot be replayed here, in words."""


def check_recorded(params: Parameters) -> None:
    """Raises ReplayError when a value is recorded but unusable (not a number, outside what a request
    takes): a default sent instead would make another image. Needs no service."""
    if params.refused:
        raise ReplayError("; ".join(params.refused.values()))


def scheduler_to_send(params: Parameters, info: pb.ServiceInfo) -> str:
    """The scheduler name for the request. Our infotext names the model's own scheduler by its diffusers
    class when it has no name here; that is the service's default, sent as "" (the model's own)."""
    if params.sampler is None:
        raise ReplayError("the parameters name no sampler")
    if params.scheduler is not None:
        return params.scheduler
    if info.defaults.scheduler and params.sampler == info.defaults.scheduler:
        return ""
    raise ReplayError(next((p for p in params.problems if p.startswith("unknown sampler")),
                           f"unknown sampler {params.sampler!r}"))


def model_to_send(params: Parameters, info: pb.ServiceInfo) -> tuple[str, list[str]]:
    """(the model name for the request, warnings): the service's model of the recorded hash, else of the
    recorded name (A1111's order: a renamed file keeps its hash); "" (the default) with a warning when it
    has neither. Nothing recorded: the default, silently."""
    if not params.model and not params.model_hash:
        return "", []
    models = list(info.models)
    for model in models:
        if params.model_hash and model.hash and model.hash.lower() == params.model_hash.lower():
            return model.name, []
    for model in models:
        if params.model and model.name == params.model:
            return model.name, []
    if not models and params.model == info.model:  # a service from before ServiceInfo.models
        return "", []
    recorded = " ".join(filter(None, (repr(params.model) if params.model else "",
                                      f"[{params.model_hash}]" if params.model_hash else "")))
    has = ", ".join(repr(model.name) for model in models) or repr(info.model)
    return "", [f"the image was made with model {recorded}, which the {params.mode} service does not have "
                f"(it has {has}): its default is used and the result will differ"]


def controlnet_to_send(params: Parameters, info: pb.ServiceInfo, control_images=(),
                       takes_image: bool = False) -> tuple[list, list[str]]:
    """(the ControlUnits to send, warnings). The infotext records a unit's settings, never its control
    image: `control_images` gives them in unit order; without one, an image mode's unit uses the request's
    input image (the contract's default) and a txt2img unit is left out, each with a warning. A ControlNet
    the service does not have (by hash, else by name) is a ReplayError."""
    units, warnings = [], []
    have = list(info.controlnets)
    for position, (index, entry) in enumerate(sorted(params.controlnet.items())):
        image = control_images[position] if position < len(control_images) else None
        if image is None and not takes_image:
            warnings.append(f"ControlNet {index} ({entry.module}, {entry.model or 'no model'}) is left out: its "
                            "control image is not in the PNG (give it to replay it); the result will differ")
            continue
        if image is None:
            warnings.append(f"ControlNet {index}: its control image is not in the PNG; the input image is used "
                            "instead, and the result differs if another was")
        found = next((cn.name for cn in have if entry.model_hash and cn.hash
                      and cn.hash.lower() == entry.model_hash.lower()), None)
        found = found or next((cn.name for cn in have if cn.name == entry.model), None)
        if found is None:
            names = ", ".join(cn.name for cn in have) or "none"
            raise ReplayError(f"the image was made with ControlNet {entry.model!r}, which the {params.mode} "
                              f"service does not have (it has {names})")
        units.append(unit_from_entry(entry, image, found))
    return units, warnings


def replay_request(params: Parameters, info: pb.ServiceInfo, *, image=None, mask=None,
                   output_format: str = "png", control_images=()):
    """(request, warnings): the request that remakes the image `params` describe, on the service whose
    GetInfo is `info`. Image modes need `image` (and inpaint `mask`): the originals, not the result;
    ControlNet units their control images (`control_images`, in unit order: see controlnet_to_send)."""
    check_recorded(params)
    contract = mode_contract(params.mode)
    missing = [name for name, value in (("steps", params.steps), ("seed", params.seed),
                                        (CFG_SCALE, params.guidance_scale), ("size", params.width))
               if value is None]
    if missing:
        raise ReplayError(f"the parameters do not record {', '.join(missing)}")
    if contract.takes_image and image is None:
        raise ReplayError(f"this image was made by {params.mode}: give its input image (--image)")
    if contract.takes_mask and mask is None and not params.outpaint:  # outpainting makes its own mask
        raise ReplayError("this image was made by inpaint: give its mask (--mask)")
    warnings = [p for p in params.problems if not p.startswith("unknown sampler")]  # none refused: raised
    model, model_warnings = model_to_send(params, info)
    warnings += model_warnings
    # The prompt's <lora:name:weight> tags carry the weights (A1111's and our infotext write them there:
    # params.loras as tags), so the prompt is sent as written; sending the field too would count them twice.
    tagged = prompt_lora_names(params)
    missing = sorted(name for name in tagged if name not in info.loras)
    if missing:
        # A big folder is a count: the message stays readable (GetInfo has the list).
        has = ', '.join(info.loras) if len(info.loras) <= 10 else f"{len(info.loras)}; GetInfo lists them"
        raise ReplayError(f"the image was made with LoRAs the {params.mode} service does not have: "
                          f"{', '.join(missing)} (it has {has or 'none'})")
    untagged = [name for name in params.loras if name not in tagged]
    if untagged:
        warnings.append(f"LoRAs recorded without a <lora:...> tag in the prompt (so without a weight) are left out: "
                        f"{', '.join(untagged)}; the result will differ")
    control, control_warnings = controlnet_to_send(params, info, list(control_images), contract.takes_image)
    warnings += control_warnings
    fields = params.request_fields()  # every field the infotext records, sent as recorded
    fields.update(
        model=model,
        scheduler=scheduler_to_send(params, info),
        schedule_type=params.schedule_type if params.scheduler is not None else "",
        strength=params.strength if params.strength is not None else contract.default_strength,
        mask_blur=params.mask_blur if params.mask_blur is not None else contract.default_mask_blur,
        # A1111's readers take a missing padding as 32, the service's default: sent, not left to it.
        only_masked_padding=(params.only_masked_padding if params.only_masked_padding is not None
                             else contract.default_only_masked_padding),
    )
    request = make_request(params.mode, **fields, num_images=1, output_format=output_format, image=image,
                           mask=None if params.outpaint else mask, control=control)
    return request, warnings
