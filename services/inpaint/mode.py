"""inpaint: repaint the masked part of an input image under a prompt."""

from PIL import Image

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import INPAINT, MASKED_CONTENT_BY_ENUM, MAX_MASK_BLUR, MAX_ONLY_MASKED_PADDING
from imagegen.v1.infotext import (DENOISING_STRENGTH, INPAINT_AREA, INPAINT_NOT_MASKED, MASK_BLUR, MASK_MODE,
                                  MASKED_AREA_PADDING, MASKED_CONTENT, ONLY_MASKED, OUTPAINT, RESIZE_MODE,
                                  RESIZE_MODE_LABELS)
from services.core.checks import (check_fit, check_image, check_params, check_strength, latent_source,
                                  output_size)
from services.core.control_checks import check_control
from services.core.engine import latents
from services.core.engine.conditioners import InpaintChannels, KeepUnmasked
from services.core.engine.rows import Row, new_row, strength_timesteps
from services.core.errors import InvalidArgument
from services.core.imaging import images, masks, preprocessors
from services.core.mode import Mode, per_image, shared_args
from services.core.spec import GenerationSpec

from . import outpaint


def check(request: pb.InpaintRequest, config, upscalers=None) -> GenerationSpec:
    params = check_params(request.params, config)
    strength, denoise_steps = check_strength(request, INPAINT.default_strength, params.steps)
    blur = request.mask_blur if request.HasField("mask_blur") else INPAINT.default_mask_blur
    if blur > MAX_MASK_BLUR:
        raise InvalidArgument("mask_blur", f"{blur} is outside 0..{MAX_MASK_BLUR}")
    fit = check_fit(request)
    content = check_masked_content(request)
    padding = (request.only_masked_padding if request.HasField("only_masked_padding")
               else INPAINT.default_only_masked_padding)
    if padding > MAX_ONLY_MASKED_PADDING:
        raise InvalidArgument("only_masked_padding", f"{padding} is outside 0..{MAX_ONLY_MASKED_PADDING}")
    source = check_image(request.init_image, "init_image.data", config.limits)
    extra = [(DENOISING_STRENGTH, strength), (MASK_BLUR, blur)]
    if outpaint.requested(request):
        sides = outpaint.check(request, source.size)
        source, mask_source = outpaint.extend(source, sides, params.seeds[0])
        refuse_resizing(params, source.size)
        extra.append((OUTPAINT, sides.describe()))
    else:
        mask_source = check_image(request.mask_image, "mask_image.data", config.limits)
    (width, height), fit = output_size(params, config, source.size, fit)
    if request.invert_mask:
        extra.append((MASK_MODE, INPAINT_NOT_MASKED))
    if request.only_masked:
        # The mask at the input's own size; the part around it is cut out and repainted at width x height.
        whole = masks.prepare_mask(mask_source, source.size, source.size, "resize", request.invert_mask)
        refuse_empty(whole)
        picture = images.to_rgb(source)
        box = masks.only_masked_region(whole, width, height, padding)
        init_image, mask = masks.cut_out(picture, whole, box, width, height)
        overlay, fit = masks.Overlay(picture, whole, box), "resize"  # no fit: the cut-out is filled

        def place(unit, image):  # a unit's map over the whole input, cut out as the input is
            whole_map = preprocessors.control_image(unit, image, *source.size, params.seeds[0])
            return masks.cut_out(whole_map, whole, box, width, height)[0]
        extra += [(INPAINT_AREA, ONLY_MASKED), (MASKED_AREA_PADDING, padding)]
    else:
        # The mask is fitted exactly as the image is, so the two stay aligned.
        mask = masks.prepare_mask(mask_source, source.size, (width, height), fit, request.invert_mask)
        refuse_empty(mask)
        init_image = images.to_rgb(images.fit_image(source, width, height, fit))
        overlay = masks.Overlay(init_image, mask)
        place = None
    encoded = latent_source(source, fit, config.limits)
    if content != "original":
        extra.append((MASKED_CONTENT, content))
        if content == "fill" and encoded is not None:  # the picture that is encoded is filled too
            encoded = masks.fill_masked(encoded, mask.resize(encoded.size, Image.NEAREST))
    if fit in RESIZE_MODE_LABELS:
        extra.append((RESIZE_MODE, RESIZE_MODE_LABELS[fit]))
    return GenerationSpec.build(
        params, width, height,
        strength=strength,
        denoise_steps=denoise_steps,
        # fill: the model sees the masked area painted with its surroundings; the answer keeps the input.
        init_image=masks.fill_masked(init_image, mask) if content == "fill" else init_image,
        mask=mask,
        mask_blur=blur,
        overlay=overlay,
        masked_content=content,
        latent_source=encoded,
        infotext_extra=tuple(extra),
        # A unit without an image of its own steers by the input, as sd-webui-controlnet does.
        control=check_control(request.params, config, width, height, params.seeds[0], init_image=source,
                              place=place),
    )


def check_masked_content(request) -> str:
    if request.masked_content not in MASKED_CONTENT_BY_ENUM:
        raise InvalidArgument("masked_content", f"unknown masked content {request.masked_content}")
    return MASKED_CONTENT_BY_ENUM[request.masked_content]


def refuse_resizing(params, canvas: tuple[int, int]) -> None:
    """An outpainted canvas is painted at its own size: resizing it would change the input's pixels."""
    for side, given, size in (("width", params.width, canvas[0]), ("height", params.height, canvas[1])):
        if given and given != size:
            raise InvalidArgument(f"params.{side}", f"outpainting paints the extended canvas at its own size "
                                                    f"({canvas[0]}x{canvas[1]}); leave params.{side} 0")


def refuse_empty(mask) -> None:
    if mask.getextrema()[1] == 0:
        raise InvalidArgument("mask_image.data",
                              "the mask marks nothing to repaint (all black after invert_mask)")


def latent_start(pipe, spec, generator):
    """(image latents, masked image latents) for one image, given to the pipeline as its `image` and
    `masked_image_latents` when the request starts from latents (fit latent: the input encoded at its own
    size and stretched; latent noise or nothing: the masked part replaced); None when it starts from the
    picture. The masked image (a 9-channel UNet's input) is the fitted picture's, at the output's size."""
    if not spec.starts_from_latents:
        return None
    height, width = spec.height, spec.width
    picture = pipe.image_processor.preprocess(spec.init_image, height=height, width=width)
    source = picture if spec.latent_source is None else pipe.image_processor.preprocess(spec.latent_source)
    start = latents.stretch(pipe, latents.encode(pipe, source, generator), height, width)
    mask = pipe.mask_processor.preprocess(spec.mask, height=height, width=width)
    if spec.masked_content in ("latent noise", "latent nothing"):
        start = latents.replace_masked(start, mask, spec.masked_content, generator)
    return start, latents.encode(pipe, picture * (mask < 0.5), generator)


def run(pipe, batch, generators, on_step):
    import torch

    first = batch[0]
    specs = [spec for spec in batch for _seed in spec.seeds]
    inputs = {"image": per_image(batch, "init_image")}
    if first.starts_from_latents:  # the batch's (batch_key), each image's made with its generator
        starts = [latent_start(pipe, spec, generator) for spec, generator in zip(specs, generators)]
        inputs = {"image": torch.cat([start[0] for start in starts]),
                  "masked_image_latents": torch.cat([start[1] for start in starts])}
    generated = pipe(
        **shared_args(pipe, batch, generators, on_step),
        **inputs,
        mask_image=per_image(batch, "mask"),
        strength=first.pipeline_strength,
        width=first.width,
        height=first.height,
    ).images
    return [finish(spec, img) for spec, img in zip(specs, generated)]


def finish(spec, image):
    """Keep the input exactly where the mask says keep; mask_blur softens the seam inside the mask. An
    only-masked cut-out goes back into the whole input first."""
    return masks.paste_back(spec.overlay, image, spec.mask_blur)


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
    start = latent_start(pipe, spec, generator)
    image = (pipe.image_processor.preprocess(spec.init_image, height=height, width=width).to(torch.float32)
             if start is None else start[0])
    four_channels = pipe.unet.config.in_channels == 4
    prepared = pipe.prepare_latents(1, pipe.vae.config.latent_channels, height, width, prompt.embeds.dtype, device,
                                    generator, None, image=image, timestep=timesteps[:1],
                                    is_strength_max=spec.pipeline_strength == 1.0, return_noise=True,
                                    return_image_latents=four_channels)
    noised, noise = prepared[0], prepared[1]
    mask_condition = pipe.mask_processor.preprocess(spec.mask, height=height, width=width)
    masked = image * (mask_condition < 0.5) if start is None else start[1]
    mask, masked_latents = pipe.prepare_mask_latents(mask_condition, masked, 1, height, width,
                                                     prompt.embeds.dtype, device, generator, cfg)
    row = new_row(pipe, spec, prompt, scheduler, timesteps, noised, generator)
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
