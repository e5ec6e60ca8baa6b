"""The server's interceptors: errors to statuses, metrics by final status, and the shared-token check.

All three wrap handlers the same way (`wrap_handler`): same serializers, behaviour wrapped.
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import Callable

import grpc

from ..errors import InternalError, InvalidArgument, ServiceError, Unauthenticated
from .status import to_status

log = logging.getLogger(__name__)


def wrap_handler(handler, around_unary: Callable, around_stream: Callable, around_deserializer: Callable | None = None):
    """`handler` with its behaviour replaced by around_unary(inner) or around_stream(inner) (and its
    request deserializer by around_deserializer(inner), when given).

    Our services only have unary-unary and unary-stream methods; other kinds pass through.
    """
    if handler is None:
        return None
    deserializer = handler.request_deserializer
    if around_deserializer is not None and deserializer is not None:
        deserializer = around_deserializer(deserializer)
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            around_unary(handler.unary_unary),
            request_deserializer=deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            around_stream(handler.unary_stream),
            request_deserializer=deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler


class Undecodable:
    """What arrives instead of a request whose bytes are not the method's message (e.g. a string
    field that is not UTF-8): gRPC would answer INTERNAL and skip the interceptors; we answer
    INVALID_ARGUMENT, counted like any other call."""

    def __init__(self, error: Exception):
        self.error = error


def _tolerant(deserializer):
    def deserialize(data: bytes):
        try:
            return deserializer(data)
        except Exception as exc:  # noqa: BLE001 - any parse failure: the bytes are the caller's
            return Undecodable(exc)

    return deserialize


def _undecodable() -> InvalidArgument:
    return InvalidArgument("request", "could not be parsed as this method's imagegen.v1 message "
                                      "(a string field that is not UTF-8, or bytes of another message?)")


def _abort(context: grpc.ServicerContext, exc: BaseException):
    if not isinstance(exc, ServiceError):
        exc = InternalError.logged(exc)
    context.abort_with_status(to_status(exc))


def _is_abort(context: grpc.ServicerContext, exc: BaseException) -> bool:
    # context.abort() raises a bare Exception after setting the code: let it through untouched.
    return type(exc) is Exception and context.code() is not None


def _map_unary(inner):
    def unary_unary(request, context):
        try:
            if isinstance(request, Undecodable):
                raise _undecodable()
            return inner(request, context)
        except Exception as exc:  # noqa: BLE001 - this is the mapping point
            if _is_abort(context, exc):
                raise
            _abort(context, exc)

    return unary_unary


def _map_stream(inner):
    def unary_stream(request, context):
        try:
            if isinstance(request, Undecodable):
                raise _undecodable()
            yield from inner(request, context)
        except Exception as exc:  # noqa: BLE001 - this is the mapping point
            if _is_abort(context, exc):
                raise
            _abort(context, exc)

    return unary_stream


class ErrorInterceptor(grpc.ServerInterceptor):
    """Maps exceptions raised by handlers to status codes, so servicers only raise; requests that do
    not parse reach it (as Undecodable) and are INVALID_ARGUMENT."""

    def intercept_service(self, continuation, handler_call_details):
        return wrap_handler(continuation(handler_call_details), _map_unary, _map_stream, _tolerant)


class TokenInterceptor(grpc.ServerInterceptor):
    """Calls to `service_name` need `authorization: Bearer <token>` metadata; health and reflection stay open."""

    def __init__(self, token: str, service_name: str):
        self._expected = f"Bearer {token}".encode()
        self._prefix = f"/{service_name}/"

    def intercept_service(self, continuation, handler_call_details):
        if not handler_call_details.method.startswith(self._prefix):
            return continuation(handler_call_details)
        given = dict(handler_call_details.invocation_metadata or ()).get("authorization", "")
        if hmac.compare_digest(given.encode(), self._expected):
            return continuation(handler_call_details)
        status = to_status(Unauthenticated(
            "missing or wrong authorization token (send 'authorization: Bearer <token>' metadata)"))

        def deny(request, context):
            context.abort_with_status(status)

        def deny_stream(request, context):
            context.abort_with_status(status)
            yield  # pragma: no cover - makes this a generator, like the handler it replaces

        return wrap_handler(continuation(handler_call_details), lambda _inner: deny, lambda _inner: deny_stream)


class MetricsInterceptor(grpc.ServerInterceptor):
    """Counts and times the mode service's calls by their final status code."""

    def __init__(self, metrics, service_name: str):
        self.metrics = metrics
        self.prefix = f"/{service_name}/"

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or not handler_call_details.method.startswith(self.prefix):
            return handler
        method = handler_call_details.method[len(self.prefix):]
        metrics, mode = self.metrics, self.metrics.mode
        generation = method.startswith("Generate") or method == "Upscale"  # both are queued work

        def record(started: float, code: str) -> None:
            metrics.requests.labels(mode, method, code).inc()
            metrics.request_seconds.labels(mode, method).observe(time.monotonic() - started)
            if generation:
                metrics.in_progress.dec()

        def final_code(context) -> str:
            code = context.code()
            return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"

        def timed_unary(inner):
            def unary_unary(request, context):
                started = time.monotonic()
                if generation:
                    metrics.in_progress.inc()
                try:
                    response = inner(request, context)
                except BaseException:
                    record(started, final_code(context))
                    raise
                record(started, "OK")
                return response

            return unary_unary

        def timed_stream(inner):
            def unary_stream(request, context):
                started = time.monotonic()
                if generation:
                    metrics.in_progress.inc()
                try:
                    yield from inner(request, context)
                except GeneratorExit:  # the client went away mid-stream
                    record(started, "CANCELLED")
                    raise
                except BaseException:
                    record(started, final_code(context))
                    raise
                record(started, "OK")

            return unary_stream

        return wrap_handler(handler, timed_unary, timed_stream)
