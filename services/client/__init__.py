"""Python client and command-line tool for the imagegen.v1 services.

    python -m services.client txt2img --prompt "a red fox" --seed 7 --out fox.png
    python -m services.client img2img --image in.png --strength 0.6 --prompt "oil painting" --out out.png
    python -m services.client inpaint --image in.png --mask mask.png --prompt "a cat" --out cat.png
    python -m services.client replay made.png --out again.png      # again, from the infotext it carries
    python -m services.client info txt2img

In code:

    with ImageGenClient("txt2img", "127.0.0.1:50051") as client:
        response = client.generate(make_request("txt2img", prompt="a red fox", seed=7))
        open("fox.png", "wb").write(response.images[0].data)
        for event in client.stream(make_request("txt2img", "a red fox")):   # Queued, Progress..., Result
            ...

Parameters read back from an image (ours or AUTOMATIC1111's): `services.client.infotext.read_parameters`.
Failures are the typed errors of `services.client.errors` (InvalidInput, QueueFull, OutOfMemory, ...).
Only grpcio and the generated contract are needed: no torch, no diffusers.
"""

from .client import EventStream, ImageGenClient
from .control import control_unit
from .errors import (
    Cancelled,
    DeadlineExceeded,
    FieldViolation,
    InternalError,
    InvalidInput,
    ModelLoading,
    NotResponding,
    OutOfMemory,
    QueueFull,
    ServiceError,
    ShuttingDown,
    TooLarge,
    Unauthenticated,
    Unreachable,
)
from .events import Event, Progress, Queued, Result
from .requests import as_image, make_request
from .security import ClientSecurity

__all__ = [
    "Cancelled", "ClientSecurity", "DeadlineExceeded", "Event", "EventStream", "FieldViolation", "ImageGenClient",
    "InternalError", "InvalidInput", "ModelLoading", "NotResponding", "OutOfMemory",
    "Progress", "Queued", "QueueFull", "Result", "ServiceError",
    "ShuttingDown", "TooLarge", "Unauthenticated", "Unreachable", "as_image", "control_unit", "make_request",
]
