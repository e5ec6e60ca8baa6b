"""One mode's service as the gateway sees it: a client with deadlines, and errors people can read.

What went wrong is read from the client's typed errors (built from the services' structured status
details), never from message text. The browser is told what to do, never the service's address nor
an internal error's text: those go to the gateway's log (logger "gateway"), with the short id that
the message shows.
"""

from __future__ import annotations

import logging
import secrets

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import placeholder_info
from services.client import (
    Cancelled,
    ClientSecurity,
    DeadlineExceeded,
    ImageGenClient,
    InternalError,
    InvalidInput,
    ModelLoading,
    NotResponding,
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

from . import checkpoints


log = logging.getLogger("gateway")


class GenerationError(Exception):
    """A failed generation, with a message for the person at the browser. `cause`: the client's typed
    error (InvalidInput with its fields, QueueFull with its retry hint, ...), None when the gateway made
    the failure itself; the HTTP API maps it to a status."""

    def __init__(self, message: str, cause: ServiceError | None = None):
        super().__init__(message)
        self.cause = cause


class Interrupted(GenerationError):
    """The generation was stopped on purpose (Interrupt, the page closing): a normal end, not a failure."""


def new_error_id() -> str:
    """A short id for an error the browser is not told about: its log line carries the same id."""
    return secrets.token_hex(4)


def internal_error_message(what: str, error_id: str) -> str:
    return f"{what} failed with an internal error (id {error_id}); the operator's logs have the details"


def explain(error: ServiceError, timeout_s: float) -> str:
    """The browser's message for a failed call: what happened and what to do, without addresses or
    internal details (an internal error shows its id; the gateway's log has the rest)."""
    mode = error.mode
    if isinstance(error, NotResponding):  # connected, but silent: stopped, hung or swamped
        return (f"{mode} service is not responding ({error.details()}) - try again shortly; "
                "the other tabs are not affected.")
    if isinstance(error, InvalidInput):
        return f"{mode}: invalid input - {error.details()}. Fix it and generate again."
    if isinstance(error, OutOfMemory):
        return f"{mode}: the GPU ran out of memory - try fewer images or a smaller size."
    if isinstance(error, QueueFull):
        return f"{mode} is busy (its queue is full) - try again in a few seconds."
    if isinstance(error, ModelLoading):
        return f"{mode} is still loading its model - try again in a moment."
    if isinstance(error, (Unreachable, ShuttingDown)):
        return (f"{mode} service is unavailable (down or restarting) - "
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
    # An internal error of the service (its id matches the service's log line), or a status nobody
    # expected (a proxy's, an unknown code): a plain message with an id, the details in the log.
    error_id = error.error_id if isinstance(error, InternalError) and error.error_id else new_error_id()
    log.error("%s service at %s: internal error (id %s): %s: %s", mode, error.address or "?", error_id,
              error.code().name, error.details())
    return internal_error_message(mode, error_id)


class ModeBackend:
    def __init__(self, mode: str, address: str, timeout_s: float = 600.0, retries: int = 3,
                 security: ClientSecurity | None = None, answer_s: float | None = 15.0):
        self.mode = mode
        self.address = address
        self.timeout_s = timeout_s
        self.answer_s = answer_s  # the first event's bound (None: none)
        self.client = ImageGenClient(mode, address, timeout=timeout_s, retries=retries, security=security)

    def info(self, rescan: bool = False) -> pb.ServiceInfo:
        """The service's GetInfo, or the contract's documented defaults while it cannot be reached;
        `rescan`: the service reads its models folder again first."""
        try:
            return self.client.info(timeout=30.0 if rescan else 3.0, rescan=rescan)
        except ServiceError:
            return placeholder_info(self.mode)

    def preprocess(self, unit, width: int = 0, height: int = 0, seed: int | None = None) -> pb.Image:
        """The Preprocess RPC (a ControlNet unit's detected map, a PNG); GenerationError in plain words."""
        try:
            return self.client.preprocess(unit, width, height, seed, timeout=min(self.timeout_s, 120.0))
        except ServiceError as err:
            log.warning("%s service at %s: Preprocess: %s: %s", self.mode, self.address, err.code().name,
                        err.details())
            raise GenerationError(explain(err, self.timeout_s), err) from None

    def model_label(self, name: str | None = None) -> str:
        """The model `name` (None or "": the default) as GetInfo describes it: "beta (SDXL inpainting
        model)"; "" when it does not say."""
        return checkpoints.describe(self.info(), name)

    def status(self) -> str:
        """'serving', 'not serving' or 'unreachable'."""
        return self.client.health(timeout=2.0).lower().replace("_", " ")

    def stream(self, request) -> "GenerationStream":
        """Start the generation; iterate the result for its events (cancel() stops it)."""
        return GenerationStream(self, self.client.stream(request, timeout=self.timeout_s,
                                                         first_event_timeout=self.answer_s))

    def generate(self, request, on_event=None) -> Result:
        """Stream the generation, passing Queued and Progress events to on_event; raise GenerationError."""
        for event in self.stream(request):
            if isinstance(event, Result):
                return event
            if on_event:
                on_event(event)
        raise AssertionError("unreachable: a stream ends with its result or raises")

    def upscale(self, request: pb.UpscaleRequest) -> pb.UpscaleResponse:
        """The service's Upscale (a mode whose contract has it); raise GenerationError."""
        try:
            return self.client.upscale(request, timeout=self.timeout_s)
        except ServiceError as err:
            log.warning("%s service at %s: %s: %s", self.mode, self.address, err.code().name, err.details())
            raise GenerationError(explain(err, self.timeout_s), err) from None

    def close(self) -> None:
        self.client.close()


class GenerationStream:
    """A running generation: Queued and Progress events, then its Result as the last event; failures as
    GenerationError. Leaving the loop early (the browser went away, Interrupt) cancels the service's work."""

    def __init__(self, backend: ModeBackend, call):
        self.backend, self.call = backend, call
        self.interrupted = False

    def cancel(self) -> None:
        self.interrupted = True
        self.call.cancel()

    def __iter__(self):
        backend, result = self.backend, None
        try:
            for event in self.call:  # to the end of the stream: the result is its last event
                if isinstance(event, Result):
                    result = event
                elif isinstance(event, (Queued, Progress)):
                    yield event
        except Cancelled as err:
            if not self.interrupted:  # cancelled by someone else (the service, a proxy): a failure
                log.warning("%s service at %s: %s: %s", backend.mode, backend.address, err.code().name,
                            err.details())
                raise GenerationError(explain(err, backend.timeout_s), err) from None
            log.info("%s: interrupted", backend.mode)
            raise Interrupted(f"{backend.mode}: interrupted.") from None
        except ServiceError as err:
            log.warning("%s service at %s: %s: %s", backend.mode, backend.address, err.code().name, err.details())
            raise GenerationError(explain(err, backend.timeout_s), err) from None
        finally:
            if result is None:
                # Closed early (the browser went away, Interrupt, the gateway stopping): stop the work.
                self.call.cancel()
        if result is None:
            error_id = new_error_id()
            log.error("%s service at %s: internal error (id %s): the stream ended without a result", backend.mode,
                      backend.address, error_id)
            raise GenerationError(internal_error_message(backend.mode, error_id))
        yield result
