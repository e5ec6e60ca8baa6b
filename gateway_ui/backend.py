"""One mode's service as the gateway sees it: a client with deadlines, and errors people can read.

What went wrong is read from the client's typed errors (built from the services' structured status
details), never from message text.
"""

from __future__ import annotations

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import placeholder_info
from services.client import (
    Cancelled,
    ClientSecurity,
    DeadlineExceeded,
    ImageGenClient,
    InvalidInput,
    ModelLoading,
    OutOfMemory,
    Progress,
    Queued,
    QueueFull,
    Result,
    ServiceError,
    ShuttingDown,
    TooLarge,
    Unauthenticated,
    Unreachable,
)


class GenerationError(Exception):
    """A failed generation, with a message for the person at the browser."""


def explain(error: ServiceError, timeout_s: float) -> str:
    mode, address = error.mode, error.address
    if isinstance(error, InvalidInput):
        return f"{mode}: invalid input - {error.details()}. Fix it and generate again."
    if isinstance(error, OutOfMemory):
        return f"{mode}: the GPU ran out of memory - try fewer images or a smaller size."
    if isinstance(error, QueueFull):
        return f"{mode} is busy (its queue is full) - try again in a few seconds."
    if isinstance(error, ModelLoading):
        return f"{mode} is still loading its model - try again in a moment."
    if isinstance(error, (Unreachable, ShuttingDown)):
        return (f"{mode} service is unavailable at {address} (down or restarting) - "
                "try again shortly; the other tabs are not affected.")
    if isinstance(error, Unauthenticated):
        return f"{mode}: the service refused the gateway's credentials - the operator must set IMAGEGEN_AUTH_TOKEN."
    if isinstance(error, DeadlineExceeded):
        if error.refused:
            return f"{mode}: {error.details()}"
        return f"{mode}: no result within {timeout_s:.0f}s - try fewer steps, fewer images or a smaller size."
    if isinstance(error, Cancelled):
        return f"{mode}: the generation was cancelled."
    if isinstance(error, TooLarge):
        return f"{mode}: request too large - {error.details()}."
    return f"{mode} failed ({error.code().name}): {error.details()}"


class ModeBackend:
    def __init__(self, mode: str, address: str, timeout_s: float = 600.0, retries: int = 3,
                 security: ClientSecurity | None = None):
        self.mode = mode
        self.address = address
        self.timeout_s = timeout_s
        self.client = ImageGenClient(mode, address, timeout=timeout_s, retries=retries, security=security)

    def info(self) -> pb.ServiceInfo:
        """The service's GetInfo, or the contract's documented defaults while it cannot be reached."""
        try:
            return self.client.info(timeout=3.0)
        except ServiceError:
            return placeholder_info(self.mode)

    def status(self) -> str:
        """'serving', 'not serving' or 'unreachable'."""
        return self.client.health(timeout=2.0).lower().replace("_", " ")

    def generate(self, request, on_event=None) -> Result:
        """Stream the generation, passing Queued and Progress events to on_event; raise GenerationError."""
        call = self.client.stream(request, timeout=self.timeout_s)
        result = None
        try:
            for event in call:  # to the end of the stream: the result is its last event
                if isinstance(event, Result):
                    result = event
                elif isinstance(event, (Queued, Progress)) and on_event:
                    on_event(event)
        except ServiceError as err:
            raise GenerationError(explain(err, self.timeout_s)) from None
        except BaseException:
            call.cancel()  # the browser went away (or the gateway is stopping): stop the work
            raise
        if result is None:
            raise GenerationError(f"{self.mode}: the service ended the stream without a result")
        return result

    def close(self) -> None:
        self.client.close()
