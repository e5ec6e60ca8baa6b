"""One mode's service as the gateway sees it: a client with deadlines, and errors people can read."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from imagegen.v1 import imagegen_pb2 as pb
from services.client import ClientSecurity, ImageGenClient


class GenerationError(Exception):
    """A failed generation, with a message for the person at the browser."""


@dataclass
class Generated:
    images: list  # GeneratedImage messages
    seeds: list[int]


def explain(mode: str, address: str, err: grpc.RpcError, timeout_s: float) -> str:
    code, details = err.code(), err.details() or ""
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return f"{mode}: invalid input - {details}. Fix it and generate again."
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        if "memory" in details:
            return f"{mode}: the GPU ran out of memory - try fewer images or a smaller size."
        if "queue" in details:
            return f"{mode} is busy (its queue is full) - try again in a few seconds."
        return f"{mode}: request too large - {details}."
    if code == grpc.StatusCode.UNAVAILABLE:
        if "loading" in details:
            return f"{mode} is still loading its model - try again in a moment."
        return (f"{mode} service is unavailable at {address} (down or restarting) - "
                "try again shortly; the other tabs are not affected.")
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return f"{mode}: the service refused the gateway's credentials - the operator must set IMAGEGEN_AUTH_TOKEN."
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"{mode}: no result within {timeout_s:.0f}s - try fewer steps, fewer images or a smaller size."
    if code == grpc.StatusCode.CANCELLED:
        return f"{mode}: the generation was cancelled."
    return f"{mode} failed ({code.name}): {details}"


class ModeBackend:
    def __init__(self, mode: str, address: str, timeout_s: float = 600.0, retries: int = 3,
                 security: ClientSecurity | None = None):
        self.mode = mode
        self.address = address
        self.timeout_s = timeout_s
        self.client = ImageGenClient(mode, address, timeout=timeout_s, retries=retries, security=security)

    def info(self) -> pb.ServiceInfo | None:
        try:
            return self.client.info(timeout=3.0)
        except grpc.RpcError:
            return None

    def status(self) -> str:
        """'serving', 'not serving' or 'unreachable'."""
        return self.client.health(timeout=2.0).lower().replace("_", " ")

    def generate(self, request, on_progress=None) -> Generated:
        """Stream the generation, reporting (step, total) and queue position; raise GenerationError."""
        call = self.client.stream(request, timeout=self.timeout_s)
        result = None
        try:
            for event in call:  # to the end of the stream: the result is its last event
                kind = event.WhichOneof("event")
                if kind == "progress" and on_progress:
                    on_progress(event.progress.step, event.progress.total_steps, None)
                elif kind == "queued" and on_progress:
                    on_progress(0, None, event.queued.position)
                elif kind == "result":
                    result = event.result
        except grpc.RpcError as err:
            raise GenerationError(explain(self.mode, self.address, err, self.timeout_s)) from None
        except BaseException:
            call.cancel()  # the browser went away (or the gateway is stopping): stop the work
            raise
        if result is None:
            raise GenerationError(f"{self.mode}: the service ended the stream without a result")
        images = list(result.images)
        return Generated(images=images, seeds=[image.seed for image in images])

    def close(self) -> None:
        self.client.close()
