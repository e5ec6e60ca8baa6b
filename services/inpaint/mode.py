"""inpaint: repaint the masked part of an input image under a prompt."""

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import INPAINT, MAX_MASK_BLUR
from services.core.checks import check_fit, check_image, check_params, check_strength, output_size
from services.core.errors import InvalidArgument
from services.core.imaging import images, masks
from services.core.mode import Mode, per_image, shared_args
from services.core.spec import GenerationSpec


def check(request: pb.InpaintRequest, config) -> GenerationSpec:
    params = check_params(request.params, config)
    strength, denoise_steps = check_strength(request, INPAINT.default_strength, params.steps)
    blur = request.mask_blur if request.HasField("mask_blur") else INPAINT.default_mask_blur
    if blur > MAX_MASK_BLUR:
        raise InvalidArgument("mask_blur", f"{blur} is outside 0..{MAX_MASK_BLUR}")
    fit = check_fit(request)
    source = check_image(request.init_image, "init_image.data", config.limits)
    mask_source = check_image(request.mask_image, "mask_image.data", config.limits)
    (width, height), fit = output_size(params, config, source.size, fit)
    # The mask is fitted exactly as the image is, so the two stay aligned.
    mask = masks.prepare_mask(mask_source, source.size, (width, height), fit, request.invert_mask)
    if mask.getextrema()[1] == 0:
        raise InvalidArgument("mask_image.data", "the mask marks nothing to repaint (all black after invert_mask)")
    extra = [("Denoising strength", strength), ("Mask blur", blur)]
    if request.invert_mask:
        extra.append(("Mask mode", "Inpaint not masked"))
    return GenerationSpec.build(
        params, width, height,
        strength=strength,
        denoise_steps=denoise_steps,
        init_image=images.to_rgb(images.fit_image(source, width, height, fit)),
        mask=mask,
        mask_blur=blur,
        infotext_extra=tuple(extra),
    )


def run(pipe, batch, generators, on_step):
    first = batch[0]
    generated = pipe(
        **shared_args(batch, generators, on_step),
        image=per_image(batch, "init_image"),
        mask_image=per_image(batch, "mask"),
        strength=first.pipeline_strength,
        width=first.width,
        height=first.height,
    ).images
    # Keep each input exactly where its mask says keep; mask_blur softens the seam.
    specs = [spec for spec in batch for _seed in spec.seeds]
    return [masks.blend_over(spec.init_image, img, spec.mask, spec.mask_blur) for spec, img in zip(specs, generated)]


def warmup_request(config):
    size = (config.defaults.size, config.defaults.size)
    return pb.InpaintRequest(
        params=pb.GenerationParams(prompt="warm-up", num_inference_steps=2, seed=0),
        init_image=pb.Image(data=images.solid_png(size), mime_type="image/png"),
        mask_image=pb.Image(data=images.solid_png(size, "L", 255), mime_type="image/png"),
    )


MODE = Mode(
    contract=INPAINT,
    default_model="stable-diffusion-v1-5/stable-diffusion-inpainting",
    pipeline_class="AutoPipelineForInpainting",
    inpaint_unet=True,
    check=check,
    run=run,
    warmup_request=warmup_request,
)
