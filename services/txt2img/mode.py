"""txt2img: a prompt becomes images."""

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1 import imagegen_pb2_grpc as pb_grpc
from services.common.mode import Mode, shared_args
from services.common.spec import check_pixels, parse_params


def parse(request: pb.Txt2ImgRequest, config):
    spec = parse_params(request.params, config)
    spec.width = spec.width or config.defaults.size
    spec.height = spec.height or config.defaults.size
    check_pixels(spec.width, spec.height, config)
    return spec


def run(pipe, batch, generators, on_step):
    return pipe(**shared_args(batch, generators, on_step), width=batch[0].width, height=batch[0].height).images


def warmup_request(config):
    return pb.Txt2ImgRequest(params=pb.GenerationParams(prompt="warm-up", num_inference_steps=2, seed=0))


MODE = Mode(
    name="txt2img",
    service="Txt2Img",
    parse=parse,
    run=run,
    warmup_request=warmup_request,
    add_servicer=pb_grpc.add_Txt2ImgServicer_to_server,
)
