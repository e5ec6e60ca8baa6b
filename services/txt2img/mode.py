"""txt2img: a prompt becomes images."""

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import TXT2IMG
from services.core.checks import check_params, output_size
from services.core.control_checks import check_control
from services.core.engine.rows import Row, new_row
from services.core.mode import Mode, shared_args
from services.core.spec import GenerationSpec

from . import hires


def check(request: pb.Txt2ImgRequest, config, upscalers=None) -> GenerationSpec:
    params = check_params(request.params, config)
    (width, height), _fit = output_size(params, config)
    # The units steer both passes: their maps are fitted again at the second pass's size (engine/resize.py).
    control = check_control(request.params, config, width, height, params.seeds[0])
    if not request.HasField("hires"):
        return GenerationSpec.build(params, width, height, control=control)
    second = hires.check(request.hires, params, width, height, config.limits, upscalers)
    return GenerationSpec.build(params, width, height, control=control, hires=second,
                                infotext_extra=second.infotext)


def run(pipe, batch, generators, on_step):
    return pipe(**shared_args(pipe, batch, generators, on_step), width=batch[0].width, height=batch[0].height).images


def warmup_request(config):
    return pb.Txt2ImgRequest(params=pb.GenerationParams(prompt="warm-up", num_inference_steps=2, seed=0))


def admit(pipe, spec, prompt, seed: int, scheduler) -> Row:
    """One image's row, starting where diffusers' text-to-image pipeline starts for this seed."""
    import torch

    device, generator = pipe._execution_device, torch.Generator("cpu").manual_seed(seed)
    pipe.scheduler = scheduler
    scheduler.set_timesteps(spec.steps, device=device)
    latents = pipe.prepare_latents(1, pipe.unet.config.in_channels, spec.height, spec.width, prompt.embeds.dtype,
                                   device, generator)
    row = new_row(pipe, spec, prompt, scheduler, scheduler.timesteps, latents, generator)
    if spec.hires is not None:
        row.plan[-1:-1] = second_pass(pipe, spec, seed, scheduler)
    return row


def second_pass(pipe, spec, seed: int, first_scheduler) -> list:
    """The hires fix's phases: the resize, then the denoising at the new size, its timesteps the last
    `steps` of a `schedule_steps` schedule (image-to-image's get_timesteps for that many), its generator
    seeded afresh by the image's seed (A1111 draws the second pass's noise from the seed again)."""
    import dataclasses

    import torch

    from services.core.engine.rows import Denoise, Resize, encode_prompt, step_kwargs
    from services.core.models import schedulers

    second = spec.hires
    device, generator = pipe._execution_device, torch.Generator("cpu").manual_seed(seed)
    # Its own sampler, else the first pass's (a fresh instance: multistep schedulers keep state).
    name, schedule = (second.scheduler, second.schedule_type) if second.scheduler else (spec.scheduler,
                                                                                      spec.schedule_type)
    scheduler = schedulers.fresh(name, first_scheduler, schedule, (seed,))
    pipe.scheduler = scheduler
    scheduler.set_timesteps(second.schedule_steps, device=device)
    skipped = (second.schedule_steps - second.steps) * scheduler.order
    timesteps = scheduler.timesteps[skipped:]
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(skipped)
    prompt = None
    if second.prompt or second.negative_prompt:
        prompt = encode_prompt(pipe, dataclasses.replace(spec, prompt=second.prompt or spec.prompt,
                                                         negative_prompt=second.negative_prompt or spec.negative_prompt))
    width, height = second.upscale_to
    size = second.size
    return [Resize(second.upscaler, second.latent_mode, (height, width), (second.crop[1], second.crop[0]),
                   generator, prompt),
            Denoise(scheduler, timesteps, step_kwargs(pipe, scheduler, generator), (size[1], size[0]), second.steps)]


MODE = Mode(
    contract=TXT2IMG,
    # What the original app used; real weights for users who have them (or can download them).
    default_model="CompVis/stable-diffusion-v1-4",
    pipeline_class="AutoPipelineForText2Image",
    check=check,
    run=run,
    warmup_request=warmup_request,
    admit=admit,
)
