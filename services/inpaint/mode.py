"""inpaint: repaint the masked part of an input image under a prompt."""

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1 import imagegen_pb2_grpc as pb_grpc
from services.common import images
from services.common.errors import InvalidArgument
from services.common.mode import Mode, per_image, shared_args
from services.common.spec import parse_init_image, parse_params, parse_strength

MAX_MASK_BLUR = 64


def parse(request: pb.InpaintRequest, config):
    spec = parse_params(request.params, config)
    spec.strength = parse_strength(request, config.defaults.strength_inpaint, spec)
    blur = request.mask_blur if request.HasField("mask_blur") else config.defaults.mask_blur
    if blur > MAX_MASK_BLUR:
        raise InvalidArgument("mask_blur", f"{blur} is outside 0..{MAX_MASK_BLUR}")
    spec.mask_blur = blur
    spec.init_image, original, fit = parse_init_image(request, spec, config)
    mask = images.decode_image(request.mask_image.data, "mask_image.data", config.limits.max_input_pixels)
    spec.mask = images.prepare_mask(
        mask, original.size, (spec.width, spec.height), "crop" if fit == "crop" else "resize", request.invert_mask
    )
    if spec.mask.getextrema()[1] == 0:
        raise InvalidArgument("mask_image.data", "the mask marks nothing to repaint (all black after invert_mask)")
    spec.infotext_extra = {"Denoising strength": spec.strength, "Mask blur": blur}
    if request.invert_mask:
        spec.infotext_extra["Mask mode"] = "Inpaint not masked"
    return spec


def run(pipe, batch, generators, on_step):
    first = batch[0]
    generated = pipe(
        **shared_args(batch, generators, on_step),
        image=per_image(batch, "init_image"),
        mask_image=per_image(batch, "mask"),
        strength=first.strength,
        width=first.width,
        height=first.height,
    ).images
    # Keep each input exactly where its mask says keep; mask_blur softens the seam.
    specs = [spec for spec in batch for _seed in spec.seeds]
    return [images.blend_over(spec.init_image, img, spec.mask, spec.mask_blur) for spec, img in zip(specs, generated)]


def warmup_request(config):
    size = (config.defaults.size, config.defaults.size)
    return pb.InpaintRequest(
        params=pb.GenerationParams(prompt="warm-up", num_inference_steps=2, seed=0),
        init_image=pb.Image(data=images.solid_png(size), mime_type="image/png"),
        mask_image=pb.Image(data=images.solid_png(size, "L", 255), mime_type="image/png"),
    )


MODE = Mode(
    name="inpaint",
    service="Inpaint",
    parse=parse,
    run=run,
    warmup_request=warmup_request,
    add_servicer=pb_grpc.add_InpaintServicer_to_server,
)
