"""img2img: an input image, transformed under a prompt."""

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1 import imagegen_pb2_grpc as pb_grpc
from services.common import images
from services.common.mode import Mode, per_image, shared_args
from services.common.spec import parse_init_image, parse_params, parse_strength


def parse(request: pb.Img2ImgRequest, config):
    spec = parse_params(request.params, config)
    spec.strength = parse_strength(request, config.defaults.strength_img2img, spec)
    spec.init_image, _original, _fit = parse_init_image(request, spec, config)
    spec.infotext_extra = {"Denoising strength": spec.strength}
    return spec


def run(pipe, batch, generators, on_step):
    # One copy of the input per image: each image's VAE sample then uses its own generator,
    # so an image does not depend on what else was in the batch.
    return pipe(
        **shared_args(batch, generators, on_step),
        image=per_image(batch, "init_image"),
        strength=batch[0].strength,
    ).images


def warmup_request(config):
    size = config.defaults.size
    return pb.Img2ImgRequest(
        params=pb.GenerationParams(prompt="warm-up", num_inference_steps=2, seed=0),
        init_image=pb.Image(data=images.solid_png((size, size)), mime_type="image/png"),
        strength=1.0,
    )


MODE = Mode(
    name="img2img",
    service="Img2Img",
    parse=parse,
    run=run,
    warmup_request=warmup_request,
    add_servicer=pb_grpc.add_Img2ImgServicer_to_server,
)
