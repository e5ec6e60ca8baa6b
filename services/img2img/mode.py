"""img2img: an input image, transformed under a prompt."""

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import IMG2IMG
from imagegen.v1.infotext import DENOISING_STRENGTH
from services.core.checks import check_fit, check_image, check_params, check_strength, output_size
from services.core.engine.rows import Row, new_row, strength_timesteps
from services.core.imaging import images
from services.core.mode import Mode, per_image, shared_args
from services.core.spec import GenerationSpec


def check(request: pb.Img2ImgRequest, config) -> GenerationSpec:
    params = check_params(request.params, config)
    strength, denoise_steps = check_strength(request, IMG2IMG.default_strength, params.steps)
    fit = check_fit(request)
    source = check_image(request.init_image, "init_image.data", config.limits)
    (width, height), fit = output_size(params, config, source.size, fit)
    return GenerationSpec.build(
        params, width, height,
        strength=strength,
        denoise_steps=denoise_steps,
        init_image=images.to_rgb(images.fit_image(source, width, height, fit)),
        infotext_extra=((DENOISING_STRENGTH, strength),),
    )


def run(pipe, batch, generators, on_step):
    # One copy of the input per image: each image's VAE sample then uses its own generator,
    # so an image does not depend on what else was in the batch.
    return pipe(
        **shared_args(pipe, batch, generators, on_step),
        image=per_image(batch, "init_image"),
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
    image = pipe.image_processor.preprocess(spec.init_image)
    timesteps = strength_timesteps(pipe, scheduler, spec.steps, spec.pipeline_strength)
    latents = pipe.prepare_latents(image, timesteps[:1], 1, 1, prompt.embeds.dtype, device, generator)
    return new_row(pipe, spec, prompt, scheduler, timesteps, latents, generator)


MODE = Mode(
    contract=IMG2IMG,
    default_model="stable-diffusion-v1-5/stable-diffusion-v1-5",
    pipeline_class="AutoPipelineForImage2Image",
    check=check,
    run=run,
    warmup_request=warmup_request,
    admit=admit,
)
