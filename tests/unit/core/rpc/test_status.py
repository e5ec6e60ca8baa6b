"""to_status: each ServiceError becomes its code, its message and structured details."""

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from imagegen.v1.contract import ERROR_DOMAIN, RETRY_AFTER_KEY, Reason
from services.core import errors
from services.core.rpc.status import to_status

DETAILS_KEY = "grpc-status-details-bin"


def rich(status: grpc.Status) -> status_pb2.Status:
    """The google.rpc.Status carried in the trailing metadata."""
    values = [value for key, value in status.trailing_metadata if key == DETAILS_KEY]
    assert len(values) == 1
    return status_pb2.Status.FromString(values[0])


def unpacked(status: grpc.Status, message_class) -> list:
    found = []
    for detail in rich(status).details:
        message = message_class()
        if detail.Unpack(message):
            found.append(message)
    return found


ALL = [
    (errors.InvalidArgument("params.width", "65 is not a multiple of 8"), grpc.StatusCode.INVALID_ARGUMENT,
     Reason.INVALID_ARGUMENT),
    (errors.QueueFull("the queue is full", retry_after_s=1.5), grpc.StatusCode.RESOURCE_EXHAUSTED,
     Reason.QUEUE_FULL),
    (errors.DeadlineUnmeetable("too slow"), grpc.StatusCode.DEADLINE_EXCEEDED, Reason.DEADLINE_UNMEETABLE),
    (errors.DeadlinePassed("waited too long"), grpc.StatusCode.DEADLINE_EXCEEDED, Reason.DEADLINE_PASSED),
    (errors.OutOfMemory("CUDA out of memory"), grpc.StatusCode.RESOURCE_EXHAUSTED, Reason.OUT_OF_MEMORY),
    (errors.ModelLoading("loading"), grpc.StatusCode.UNAVAILABLE, Reason.MODEL_LOADING),
    (errors.ShuttingDown("draining"), grpc.StatusCode.UNAVAILABLE, Reason.SHUTTING_DOWN),
    (errors.Cancelled("cancelled"), grpc.StatusCode.CANCELLED, Reason.CANCELLED),
    (errors.Unauthenticated("bad token"), grpc.StatusCode.UNAUTHENTICATED, Reason.UNAUTHENTICATED),
    (errors.ServiceError("something broke"), grpc.StatusCode.INTERNAL, Reason.INTERNAL),
]


@pytest.mark.parametrize("error, code, reason", ALL, ids=[type(e).__name__ for e, _, _ in ALL])
def test_every_error_has_its_code_message_and_reason(error, code, reason):
    status = to_status(error)
    assert isinstance(status, grpc.Status)
    assert status.code == code and status.details == error.message
    assert rich(status).code == code.value[0] and rich(status).message == error.message
    [info] = unpacked(status, error_details_pb2.ErrorInfo)
    assert (info.reason, info.domain) == (reason, ERROR_DOMAIN)


def test_invalid_argument_names_the_field_in_bad_request():
    status = to_status(errors.InvalidArgument("params.width", "65 is not a multiple of 8"))
    assert status.details == "params.width: 65 is not a multiple of 8"
    [bad] = unpacked(status, error_details_pb2.BadRequest)
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("params.width", "65 is not a multiple of 8")]
    assert unpacked(status, error_details_pb2.RetryInfo) == []


def test_queue_full_carries_retry_info_and_a_retry_after_header():
    status = to_status(errors.QueueFull("the queue is full", retry_after_s=1.5))
    [retry] = unpacked(status, error_details_pb2.RetryInfo)
    assert retry.retry_delay.ToMilliseconds() == 1500
    assert (RETRY_AFTER_KEY, "1500") in status.trailing_metadata
    assert unpacked(status, error_details_pb2.BadRequest) == []


def test_other_errors_carry_no_retry_hint():
    status = to_status(errors.OutOfMemory("CUDA out of memory"))
    assert unpacked(status, error_details_pb2.RetryInfo) == []
    assert all(key != RETRY_AFTER_KEY for key, _ in status.trailing_metadata)
