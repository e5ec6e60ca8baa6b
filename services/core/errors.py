"""Errors the services raise: each carries its gRPC status code and the contract's reason for it.

Raised anywhere in the core or a mode; `rpc.status` turns them into statuses at one place.
"""

from __future__ import annotations

import logging
import secrets

import grpc

from imagegen.v1.contract import Reason


def new_error_id() -> str:
    """A short id that ties a message the caller gets to the service log line with the details."""
    return secrets.token_hex(4)


class ServiceError(Exception):
    """An error with a gRPC status code, a reason (contract.Reason) and a message meant for the caller."""

    code = grpc.StatusCode.INTERNAL
    reason = Reason.INTERNAL

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message
        self.metadata: dict[str, str] = {}  # extra google.rpc.ErrorInfo metadata for the caller


class InvalidArgument(ServiceError):
    """A request field is wrong; `field` is its path, e.g. `params.width`."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = Reason.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem

    @classmethod
    def logged(cls, field: str, problem: str, detail: str, log: logging.Logger) -> "InvalidArgument":
        """`problem` for the caller with a short id; `detail` (paths, a library's words) only in the log
        line with that id, as InternalError does."""
        error_id = new_error_id()
        log.warning("%s: %s (id %s): %s", field, problem, error_id, detail)
        error = cls(field, f"{problem} (details in the service log, id {error_id})")
        error.metadata["error_id"] = error_id
        return error


class QueueFull(ServiceError):
    """The queue is full; `retry_after_s` is when a place is likely to be free."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = Reason.QUEUE_FULL

    def __init__(self, message: str, retry_after_s: float):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DeadlineUnmeetable(ServiceError):
    """The caller's deadline cannot be met: refused before any work."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = Reason.DEADLINE_UNMEETABLE


class DeadlinePassed(ServiceError):
    """The caller's deadline passed while the request waited."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = Reason.DEADLINE_PASSED


class OutOfMemory(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = Reason.OUT_OF_MEMORY


class ModelLoading(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE
    reason = Reason.MODEL_LOADING


class ShuttingDown(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE
    reason = Reason.SHUTTING_DOWN


class Cancelled(ServiceError):
    code = grpc.StatusCode.CANCELLED
    reason = Reason.CANCELLED


class Unauthenticated(ServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED
    reason = Reason.UNAUTHENTICATED


class InternalError(ServiceError):
    """A failure of the service, not of the request. The caller gets a short id, never the details;
    the log line with the same id has them."""

    @classmethod
    def logged(cls, exc: BaseException, log: logging.Logger | None = None) -> "InternalError":
        error_id = new_error_id()
        (log or logging.getLogger("imagegen")).error("internal error %s: %s: %s", error_id, type(exc).__name__, exc,
                                                      exc_info=exc)
        error = cls(f"internal error (id {error_id}); the service log has the details")
        error.metadata["error_id"] = error_id
        return error
