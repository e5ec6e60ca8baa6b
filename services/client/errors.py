"""Typed errors, read from the structured details the services send (never from message text).

Every service status carries a google.rpc.ErrorInfo whose reason (contract.Reason) says what happened;
INVALID_ARGUMENT carries google.rpc.BadRequest, a full queue google.rpc.RetryInfo. Statuses made by
gRPC itself (a service that cannot be reached, a message over the transport limit) have no details and
are typed by their code. Each error is still a grpc.RpcError with code(), details() and
trailing_metadata(), so code written against plain gRPC errors keeps working.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from imagegen.v1.contract import ERROR_DOMAIN, RETRY_AFTER_KEY, Reason


@dataclass(frozen=True)
class FieldViolation:
    field: str  # e.g. "params.width"
    description: str  # e.g. "65 is not a multiple of 8"


class ServiceError(grpc.RpcError):
    """A failed call to a mode's service. `reason` is the contract's reason, None when gRPC made the status."""

    def __init__(self, code: grpc.StatusCode, details: str, reason: str | None = None, trailing_metadata=(),
                 mode: str = "", address: str = ""):
        super().__init__(f"{code.name}: {details}")
        self._code, self._details, self._metadata = code, details, tuple(trailing_metadata or ())
        self.reason = reason
        self.mode = mode
        self.address = address
        self.error_id: str | None = None  # an internal error's id, as in the service's log

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple:
        return self._metadata


class InvalidInput(ServiceError):
    """A request field is wrong; `violations` name the fields."""

    violations: tuple[FieldViolation, ...] = ()


class QueueFull(ServiceError):
    """The service is busy; `retry_after_s` is its hint (None if it gave none)."""

    retry_after_s: float | None = None


class OutOfMemory(ServiceError):
    """The device ran out of memory: ask for fewer or smaller images."""


class TooLarge(ServiceError):
    """A message over the transport's size limit."""


class ModelLoading(ServiceError):
    """The service is still loading its model: retry shortly."""


class ShuttingDown(ServiceError):
    """The service is draining: retry (on another replica)."""


class Unreachable(ServiceError):
    """No service answered at the address (down, restarting, or a wrong address)."""


class NotResponding(ServiceError):
    """The service took the call but sent nothing within the bound the caller set (stopped, hung or
    swamped); the call was cancelled. Made by the client, so it has no reason."""

    @classmethod
    def after(cls, seconds: float, client) -> "NotResponding":
        return cls(grpc.StatusCode.DEADLINE_EXCEEDED, f"no answer within {seconds:g}s", mode=client.mode,
                   address=client.address)


class Unauthenticated(ServiceError):
    """The service refused the credentials (token)."""


class DeadlineExceeded(ServiceError):
    """The deadline passed; `refused` when the service refused it up front as one it could not meet."""

    @property
    def refused(self) -> bool:
        return self.reason == Reason.DEADLINE_UNMEETABLE


class Cancelled(ServiceError):
    """The call was cancelled."""


class InternalError(ServiceError):
    """A failure of the service itself; `error_id` (when the service gave one) matches its log line."""


_BY_REASON = {
    Reason.INVALID_ARGUMENT: InvalidInput,
    Reason.QUEUE_FULL: QueueFull,
    Reason.OUT_OF_MEMORY: OutOfMemory,
    Reason.MODEL_LOADING: ModelLoading,
    Reason.SHUTTING_DOWN: ShuttingDown,
    Reason.DEADLINE_UNMEETABLE: DeadlineExceeded,
    Reason.DEADLINE_PASSED: DeadlineExceeded,
    Reason.CANCELLED: Cancelled,
    Reason.UNAUTHENTICATED: Unauthenticated,
    Reason.INTERNAL: InternalError,
}
_BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidInput,
    grpc.StatusCode.RESOURCE_EXHAUSTED: TooLarge,
    grpc.StatusCode.UNAVAILABLE: Unreachable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.INTERNAL: InternalError,
    grpc.StatusCode.UNKNOWN: InternalError,
}


def _details_of(err: grpc.RpcError) -> list:
    try:
        status = rpc_status.from_call(err)
    except (ValueError, AttributeError):  # details that do not match the code, or not a call
        return []
    return list(status.details) if status is not None else []


def _retry_after_metadata(metadata) -> float | None:
    for key, value in metadata:
        if key == RETRY_AFTER_KEY:
            try:
                return int(value) / 1000
            except ValueError:
                return None
    return None


def from_rpc_error(err: grpc.RpcError, mode: str = "", address: str = "") -> ServiceError:
    """The typed error for a failed call (a ServiceError is returned as it is)."""
    if isinstance(err, ServiceError):
        return err
    code = err.code() if callable(getattr(err, "code", None)) else grpc.StatusCode.UNKNOWN
    details = (err.details() if callable(getattr(err, "details", None)) else "") or ""
    metadata = tuple(err.trailing_metadata() or ()) if callable(getattr(err, "trailing_metadata", None)) else ()
    reason, violations, retry_after, error_id = None, [], None, None
    for detail in _details_of(err):
        info = error_details_pb2.ErrorInfo()
        bad = error_details_pb2.BadRequest()
        retry = error_details_pb2.RetryInfo()
        if detail.Unpack(info) and info.domain == ERROR_DOMAIN:
            reason, error_id = info.reason, info.metadata.get("error_id")
        elif detail.Unpack(bad):
            violations += [FieldViolation(v.field, v.description) for v in bad.field_violations]
        elif detail.Unpack(retry):
            retry_after = retry.retry_delay.ToMilliseconds() / 1000
    cls = _BY_REASON.get(reason) or _BY_CODE.get(code, ServiceError)
    error = cls(code, details, reason, metadata, mode, address)
    error.error_id = error_id
    if isinstance(error, InvalidInput):
        error.violations = tuple(violations)
    if isinstance(error, QueueFull):
        error.retry_after_s = retry_after if retry_after is not None else _retry_after_metadata(metadata)
    return error
