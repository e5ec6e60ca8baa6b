"""img2img: an input image, transformed under a prompt."""

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import IMG2IMG
from imagegen.v1.infotext import DENOISING_STRENGTH, RESIZE_MODE, RESIZE_MODE_LABELS
from services.core.checks import (check_fit, check_image, check_params, check_strength, latent_source,
                                  output_size)
from services.core.control_checks import check_control
from services.core.engine import latents
from services.core.engine.rows import Row, new_row, strength_timesteps
from services.core.imaging import images
from services.core.mode import Mode, per_image, shared_args
from services.core.spec import GenerationSpec


def check(request: pb.Img2ImgRequest, config, upscalers=None) -> GenerationSpec:
    params = check_params(request.params, config)
    strength, denoise_steps = check_strength(request, IMG2IMG.default_strength, params.steps)
    fit = check_fit(request)
    source = check_image(request.init_image, "init_image.data", config.limits)
    (width, height), fit = output_size(params, config, source.size, fit)
    extra = [(DENOISING_STRENGTH, strength)]
    if fit in RESIZE_MODE_LABELS:
        extra.append((RESIZE_MODE, RESIZE_MODE_LABELS[fit]))
    return GenerationSpec.build(
        params, width, height,
        strength=strength,
        denoise_steps=denoise_steps,
        init_image=images.to_rgb(images.fit_image(source, width, height, fit)),
        latent_source=latent_source(source, fit, config.limits),
        infotext_extra=tuple(extra),
        # A unit without an image of its own steers by the input, as sd-webui-controlnet does.
        control=check_control(request.params, config, width, height, params.seeds[0], init_image=source),
    )


def start(pipe, spec, generator):
    """What the pipeline starts from for one image: the fitted picture, preprocessed; for fit latent, the
    input's latents at its own size stretched to the output's (taken by the pipeline as they are)."""
    if spec.latent_source is None:
        return pipe.image_processor.preprocess(spec.init_image)
    encoded = latents.encode(pipe, pipe.image_processor.preprocess(spec.latent_source), generator)
    return latents.stretch(pipe, encoded, spec.height, spec.width)


def run(pipe, batch, generators, on_step):
    # One copy of the input per image: each image's VAE sample then uses its own generator,
    # so an image does not depend on what else was in the batch.
    if batch[0].starts_from_latents:  # the batch's latents, each encoded with its image's generator
        import torch

        specs = [spec for spec in batch for _seed in spec.seeds]
        image = torch.cat([start(pipe, spec, generator) for spec, generator in zip(specs, generators)])
    else:
        image = per_image(batch, "init_image")
    return pipe(
        **shared_args(pipe, batch, generators, on_step),
        image=image,
        strength=batch[0].pipeline_strength,
    ).images


def warmup_request(config):
    size = config.defaults.size
    return pb.Img2ImgRequest(
        params=pb.GenerationParams(prompt="warm-up", num_inference_steps=2, seed=0),
        init_image=pb.Image(data=images.solid_png((size, size)), mime_type="image/png"),
        strength=1.0,
    )


def admit(pipe, spec, prompt, seed: int, scheduler) -> Row:
    """One image's row, starting where diffusers' image-to-image pipeline starts for this seed."""
    import torch

    device, generator = pipe._execution_device, torch.Generator("cpu").manual_seed(seed)
    timesteps = strength_timesteps(pipe, scheduler, spec.steps, spec.pipeline_strength)
    image = start(pipe, spec, generator)
    noised = pipe.prepare_latents(image, timesteps[:1], 1, 1, prompt.embeds.dtype, device, generator)
    return new_row(pipe, spec, prompt, scheduler, timesteps, noised, generator)


MODE = Mode(
    contract=IMG2IMG,
    default_model="stable-diffusion-v1-5/stable-diffusion-v1-5",
    pipeline_class="AutoPipelineForImage2Image",
    check=check,
    run=run,
    warmup_request=warmup_request,
    admit=admit,
)
