"""inpaint: repaint the masked part of an input image under a prompt."""

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import INPAINT, MAX_MASK_BLUR
from imagegen.v1.infotext import DENOISING_STRENGTH, INPAINT_NOT_MASKED, MASK_BLUR, MASK_MODE
from services.core.checks import check_fit, check_image, check_params, check_strength, output_size
from services.core.engine.conditioners import InpaintChannels, KeepUnmasked
from services.core.engine.rows import Row, new_row, strength_timesteps
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
    extra = [(DENOISING_STRENGTH, strength), (MASK_BLUR, blur)]
    if request.invert_mask:
        extra.append((MASK_MODE, INPAINT_NOT_MASKED))
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
        **shared_args(pipe, batch, generators, on_step),
        image=per_image(batch, "init_image"),
        mask_image=per_image(batch, "mask"),
        strength=first.pipeline_strength,
        width=first.width,
        height=first.height,
    ).images
    specs = [spec for spec in batch for _seed in spec.seeds]
    return [finish(spec, img) for spec, img in zip(specs, generated)]


def finish(spec, image):
    """Keep the input exactly where the mask says keep; mask_blur softens the seam inside the mask."""
    return masks.blend_over(spec.init_image, image, spec.mask, spec.mask_blur)


def warmup_request(config):
    size = (config.defaults.size, config.defaults.size)
    return pb.InpaintRequest(
        params=pb.GenerationParams(prompt="warm-up", num_inference_steps=2, seed=0),
        init_image=pb.Image(data=images.solid_png(size), mime_type="image/png"),
        mask_image=pb.Image(data=images.solid_png(size, "L", 255), mime_type="image/png"),
    )


def admit(pipe, spec, prompt, seed: int, scheduler) -> Row:
    """One image's row, starting where diffusers' inpainting pipeline starts for this seed: 9-channel
    UNets take the mask and the masked image's latents as extra input; 4-channel ones (a text-to-image
    model used for inpainting) keep the unmasked latents at every step instead."""
    import torch

    device, generator = pipe._execution_device, torch.Generator("cpu").manual_seed(seed)
    height, width, cfg = spec.height, spec.width, prompt.guided
    timesteps = strength_timesteps(pipe, scheduler, spec.steps, spec.pipeline_strength)
    image = pipe.image_processor.preprocess(spec.init_image, height=height, width=width).to(torch.float32)
    four_channels = pipe.unet.config.in_channels == 4
    prepared = pipe.prepare_latents(1, pipe.vae.config.latent_channels, height, width, prompt.embeds.dtype, device,
                                    generator, None, image=image, timestep=timesteps[:1],
                                    is_strength_max=spec.pipeline_strength == 1.0, return_noise=True,
                                    return_image_latents=four_channels)
    latents, noise = prepared[0], prepared[1]
    mask_condition = pipe.mask_processor.preprocess(spec.mask, height=height, width=width)
    mask, masked_latents = pipe.prepare_mask_latents(mask_condition, image * (mask_condition < 0.5), 1, height,
                                                     width, prompt.embeds.dtype, device, generator, cfg)
    row = new_row(pipe, spec, prompt, scheduler, timesteps, latents, generator)
    if not four_channels:
        return row.attach(InpaintChannels(mask, masked_latents))
    return row.attach(KeepUnmasked(prepared[2], noise, mask.chunk(2)[0] if cfg else mask))


MODE = Mode(
    contract=INPAINT,
    default_model="stable-diffusion-v1-5/stable-diffusion-inpainting",
    pipeline_class="AutoPipelineForInpainting",
    check=check,
    run=run,
    warmup_request=warmup_request,
    admit=admit,
    finish=finish,
)
