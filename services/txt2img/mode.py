"""txt2img: a prompt becomes images."""

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import TXT2IMG
from services.core.checks import check_params, output_size
from services.core.control_checks import check_control
from services.core.engine.rows import Row, new_row
from services.core.mode import Mode, shared_args
from services.core.spec import GenerationSpec


def check(request: pb.Txt2ImgRequest, config) -> GenerationSpec:
    params = check_params(request.params, config)
    (width, height), _fit = output_size(params, config)
    control = check_control(request.params, config, width, height, params.seeds[0])
    return GenerationSpec.build(params, width, height, control=control)


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
    return new_row(pipe, spec, prompt, scheduler, scheduler.timesteps, latents, generator)


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
