"""AUTOMATIC1111's Extras routes, /extra-single-image and /extra-batch-images: its request fields and answer
(modules/api/models.py ExtrasBaseRequest and friends), each image through the img2img service's Upscale.

As A1111: upscaler_1 "None" leaves the image as it is (and upscaler 2 is not run); resize_mode 0 scales by
upscaling_resize, 1 to upscaling_resize_w x upscaling_resize_h (with upscaling_crop: exactly that size,
the centre; without: by the larger of the two ratios); html_info is the postprocessing text as HTML. Nothing
is saved (A1111's API does not save Extras results either). A field the service refuses is a 422 naming
A1111's field (imageList.N.data for a batch's image).
"""

from __future__ import annotations

import base64
import html

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import UPSCALE_MODE

from ..backend import GenerationError
from ..extras import upscale_request
from ..hub import Hub
from .errors import field_error, from_generation
from .mapping import decode_image
from .models import A1111Body

# The UpscaleRequest fields as A1111's Extras names them, by resize mode (a size asked by ratio is A1111's
# "Scale to" without crop, whose scale the gateway works out from the two sides).
_FIELDS = {"upscaler": "upscaler_1", "upscaler_2": "upscaler_2",
           "upscaler_2_visibility": "extras_upscaler_2_visibility", "width": "upscaling_resize_w",
           "height": "upscaling_resize_h"}
_SCALE_FIELD = {0: "upscaling_resize", 1: "upscaling_resize_w"}


class ExtrasBase(A1111Body):
    """A1111's ExtrasBaseRequest: its fields and defaults (face restoration has no counterpart here)."""

    resize_mode: int = 0
    show_extras_results: bool = True
    gfpgan_visibility: float = 0
    codeformer_visibility: float = 0
    codeformer_weight: float = 0
    upscaling_resize: float = 2
    upscaling_resize_w: int = 512
    upscaling_resize_h: int = 512
    upscaling_crop: bool = True
    upscaler_1: str = "None"
    upscaler_2: str = "None"
    extras_upscaler_2_visibility: float = 0
    upscale_first: bool = False


class ExtrasSingleImageRequest(ExtrasBase):
    image: str = ""


class FileData(BaseModel):
    data: str
    name: str = ""


class ExtrasBatchImagesRequest(ExtrasBase):
    imageList: list[FileData] = []  # noqa: N815 - A1111's name


def check_body(body: ExtrasBase) -> None:
    """422 for what A1111 would do that nothing here does, naming the field."""
    if body.resize_mode not in (0, 1):
        raise field_error("resize_mode", "0 (scale by upscaling_resize) or 1 (to upscaling_resize_w x _h)")
    for name in ("gfpgan_visibility", "codeformer_visibility"):
        if getattr(body, name):
            raise field_error(name, "face restoration is not offered here; leave it 0")


def html_info(text: str) -> str:
    """A1111's plaintext_to_html: the text escaped, one line each, in a paragraph."""
    return "<p>" + "<br>\n".join(html.escape(line) for line in text.split("\n")) + "</p>"


def upscale_one(hub: Hub, body: ExtrasBase, data: bytes, where: str) -> pb.UpscaleResponse:
    """One image through the service's Upscale, as A1111's Extras treats it."""
    request = upscale_request(data, body.model_dump())
    fields = {**_FIELDS, "image": where, "scale": _SCALE_FIELD[body.resize_mode]}
    try:
        return hub.backends[UPSCALE_MODE].upscale(request)
    except GenerationError as err:
        raise from_generation(err, lambda field: fields.get(field, field)) from None


def add_routes(router: APIRouter, hub: Hub) -> None:
    @router.post("/extra-single-image", summary="Upscale one image (A1111's Extras fields and answer)")
    async def extra_single_image(body: ExtrasSingleImageRequest) -> dict:
        check_body(body)
        data = decode_image(body.image, "image")
        answer = await run_in_threadpool(upscale_one, hub, body, data, "image")
        return {"html_info": html_info(answer.image.infotext),
                "image": base64.b64encode(answer.image.data).decode()}

    @router.post("/extra-batch-images", summary="Upscale several images (A1111's Extras fields and answer)")
    async def extra_batch_images(body: ExtrasBatchImagesRequest) -> dict:
        check_body(body)
        found = [decode_image(item.data, f"imageList.{i}.data") for i, item in enumerate(body.imageList)]
        answers = []
        for i, data in enumerate(found):
            answers.append(await run_in_threadpool(upscale_one, hub, body, data, f"imageList.{i}.data"))
        return {"html_info": html_info(answers[-1].image.infotext) if answers else "",
                "images": [base64.b64encode(a.image.data).decode() for a in answers]}
