"""Errors the services raise, and the one place that turns them into gRPC statuses."""

from __future__ import annotations

import collections
import logging

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from .handlers import wrap_handler

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """An error with a gRPC status code and a message meant for the caller."""

    code = grpc.StatusCode.INTERNAL

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidArgument(ServiceError):
    """A request field is wrong; `field` is its path, e.g. `params.width`."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class QueueFull(ServiceError):
    """The queue is full; `retry_after_s` is when a place is likely to be free."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after_s: float):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DeadlineTooShort(ServiceError):
    """The caller's deadline cannot be met (refused before computing) or passed while queued."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class OutOfMemory(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE


class Cancelled(ServiceError):
    code = grpc.StatusCode.CANCELLED


RETRY_AFTER_KEY = "retry-after-ms"  # trailing metadata: how long to wait before retrying


class _Status(collections.namedtuple("_Status", ("code", "details", "trailing_metadata")), grpc.Status):
    pass


def to_status(error: ServiceError) -> grpc.Status:
    status = status_pb2.Status(code=getattr(code_pb2, error.code.name), message=error.message)
    extra_metadata: tuple = ()
    if isinstance(error, QueueFull):
        # Both the standard google.rpc.RetryInfo detail and a plain header any client can read.
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(int(error.retry_after_s * 1000))
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        status.details.append(detail)
        extra_metadata = ((RETRY_AFTER_KEY, str(int(error.retry_after_s * 1000))),)
    if isinstance(error, InvalidArgument):
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=error.field, description=error.problem
                    )
                ]
            )
        )
        status.details.append(detail)
    converted = rpc_status.to_status(status)
    return _Status(converted.code, converted.details, tuple(converted.trailing_metadata) + extra_metadata)


def _abort(context: grpc.ServicerContext, exc: BaseException):
    if isinstance(exc, ServiceError):
        context.abort_with_status(to_status(exc))
    log.exception("unexpected error")
    context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")


def _is_abort(context: grpc.ServicerContext, exc: BaseException) -> bool:
    # context.abort() raises a bare Exception after setting the code: let it through untouched.
    return type(exc) is Exception and context.code() is not None


def _map_unary(inner):
    def unary_unary(request, context):
        try:
            return inner(request, context)
        except Exception as exc:  # noqa: BLE001 - this is the mapping point
            if _is_abort(context, exc):
                raise
            _abort(context, exc)

    return unary_unary


def _map_stream(inner):
    def unary_stream(request, context):
        try:
            yield from inner(request, context)
        except Exception as exc:  # noqa: BLE001 - this is the mapping point
            if _is_abort(context, exc):
                raise
            _abort(context, exc)

    return unary_stream


class ErrorInterceptor(grpc.ServerInterceptor):
    """Maps exceptions raised by handlers to status codes, so servicers only raise."""

    def intercept_service(self, continuation, handler_call_details):
        return wrap_handler(continuation(handler_call_details), _map_unary, _map_stream)
