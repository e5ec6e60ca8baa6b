"""ServiceErrors as gRPC statuses, with the structured details clients read instead of message text."""

from __future__ import annotations

import collections

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from imagegen.v1.contract import ERROR_DOMAIN, RETRY_AFTER_KEY

from ..errors import InvalidArgument, QueueFull, ServiceError


class _Status(collections.namedtuple("_Status", ("code", "details", "trailing_metadata")), grpc.Status):
    pass


def _packed(message) -> any_pb2.Any:
    detail = any_pb2.Any()
    detail.Pack(message)
    return detail


def to_status(error: ServiceError) -> grpc.Status:
    """The status for `error`: its code and message, a google.rpc.ErrorInfo with its reason, and
    BadRequest (the field) or RetryInfo (when to retry) where they apply."""
    status = status_pb2.Status(code=getattr(code_pb2, error.code.name), message=error.message)
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata)
    status.details.append(_packed(info))
    extra_metadata: tuple = ()
    if isinstance(error, QueueFull):
        # Both the standard google.rpc.RetryInfo detail and a plain header any client can read.
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(int(error.retry_after_s * 1000))
        status.details.append(_packed(error_details_pb2.RetryInfo(retry_delay=delay)))
        extra_metadata = ((RETRY_AFTER_KEY, str(int(error.retry_after_s * 1000))),)
    if isinstance(error, InvalidArgument):
        violation = error_details_pb2.BadRequest.FieldViolation(field=error.field, description=error.problem)
        status.details.append(_packed(error_details_pb2.BadRequest(field_violations=[violation])))
    converted = rpc_status.to_status(status)
    return _Status(converted.code, converted.details, tuple(converted.trailing_metadata) + extra_metadata)
