"""from_rpc_error: the client's typed errors, read from the statuses the services send."""

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from imagegen.v1.contract import ERROR_DOMAIN, RETRY_AFTER_KEY, Reason
from services.client import errors as client
from services.core import errors as server
from services.core.rpc.status import to_status


class FailedCall(grpc.RpcError):
    """What a failed call exposes (grpc.Call's code, details, trailing_metadata), from a status."""

    def __init__(self, code, details="", trailing_metadata=()):
        super().__init__(details)
        self._code, self._details, self._metadata = code, details, tuple(trailing_metadata)

    def code(self):
        return self._code

    def details(self):
        return self._details

    def trailing_metadata(self):
        return self._metadata


def received(error: server.ServiceError, **where) -> client.ServiceError:
    status = to_status(error)
    return client.from_rpc_error(FailedCall(status.code, status.details, status.trailing_metadata), **where)


MAPPING = [
    (server.InvalidArgument("params.width", "65 is not a multiple of 8"), client.InvalidInput),
    (server.QueueFull("the queue is full", retry_after_s=2.0), client.QueueFull),
    (server.OutOfMemory("CUDA out of memory"), client.OutOfMemory),
    (server.ModelLoading("loading"), client.ModelLoading),
    (server.ShuttingDown("draining"), client.ShuttingDown),
    (server.DeadlineUnmeetable("too slow"), client.DeadlineExceeded),
    (server.DeadlinePassed("waited too long"), client.DeadlineExceeded),
    (server.Cancelled("cancelled"), client.Cancelled),
    (server.Unauthenticated("bad token"), client.Unauthenticated),
    (server.ServiceError("something broke"), client.InternalError),
]


@pytest.mark.parametrize("error, expected", MAPPING, ids=[type(e).__name__ for e, _ in MAPPING])
def test_every_server_error_maps_to_its_client_class(error, expected):
    typed = received(error, mode="txt2img", address="127.0.0.1:1")
    assert type(typed) is expected and isinstance(typed, grpc.RpcError)
    assert typed.code() == error.code and typed.details() == error.message
    assert typed.reason == error.reason
    assert (typed.mode, typed.address) == ("txt2img", "127.0.0.1:1")


def test_invalid_input_names_the_field():
    typed = received(server.InvalidArgument("params.width", "65 is not a multiple of 8"))
    assert typed.violations == (client.FieldViolation("params.width", "65 is not a multiple of 8"),)


def test_queue_full_reads_the_retry_hint():
    assert received(server.QueueFull("the queue is full", retry_after_s=2.5)).retry_after_s == 2.5


def test_queue_full_without_retry_info_reads_the_retry_after_header():
    status = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message="the queue is full")
    status.details.add().Pack(error_details_pb2.ErrorInfo(reason=Reason.QUEUE_FULL, domain=ERROR_DOMAIN))
    metadata = rpc_status.to_status(status).trailing_metadata + ((RETRY_AFTER_KEY, "2500"),)
    typed = client.from_rpc_error(FailedCall(grpc.StatusCode.RESOURCE_EXHAUSTED, status.message, metadata))
    assert type(typed) is client.QueueFull and typed.retry_after_s == 2.5
    bare = client.from_rpc_error(FailedCall(grpc.StatusCode.RESOURCE_EXHAUSTED, status.message,
                                            rpc_status.to_status(status).trailing_metadata))
    assert type(bare) is client.QueueFull and bare.retry_after_s is None


def test_deadline_refused_up_front_is_told_from_one_that_passed():
    assert received(server.DeadlineUnmeetable("too slow")).refused is True
    assert received(server.DeadlinePassed("waited too long")).refused is False


@pytest.mark.parametrize("code, expected", [
    (grpc.StatusCode.UNAVAILABLE, client.Unreachable),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, client.TooLarge),
    (grpc.StatusCode.DEADLINE_EXCEEDED, client.DeadlineExceeded),
    (grpc.StatusCode.CANCELLED, client.Cancelled),
    (grpc.StatusCode.UNAUTHENTICATED, client.Unauthenticated),
    (grpc.StatusCode.INVALID_ARGUMENT, client.InvalidInput),
    (grpc.StatusCode.INTERNAL, client.InternalError),
])
def test_statuses_without_details_are_typed_by_code(code, expected):
    typed = client.from_rpc_error(FailedCall(code, "failed to connect"))
    assert type(typed) is expected and typed.reason is None and typed.details() == "failed to connect"


def test_without_details_deadline_is_not_refused_and_invalid_input_has_no_violations():
    assert client.from_rpc_error(FailedCall(grpc.StatusCode.DEADLINE_EXCEEDED)).refused is False
    assert client.from_rpc_error(FailedCall(grpc.StatusCode.INVALID_ARGUMENT)).violations == ()


def test_details_that_do_not_match_the_code_are_ignored():
    status = to_status(server.ModelLoading("loading"))
    call = FailedCall(grpc.StatusCode.INTERNAL, status.details, status.trailing_metadata)
    typed = client.from_rpc_error(call)
    assert type(typed) is client.InternalError and typed.reason is None


def test_a_typed_error_is_returned_as_it_is():
    typed = received(server.Cancelled("cancelled"))
    assert client.from_rpc_error(typed) is typed


def test_reason_wins_over_the_code():
    typed = received(server.OutOfMemory("CUDA out of memory"))
    assert typed.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and type(typed) is client.OutOfMemory
    assert typed.reason == Reason.OUT_OF_MEMORY


def test_an_internal_error_carries_its_id_not_its_details():
    typed = received(server.InternalError.logged(ZeroDivisionError("secret path /tmp/x")))
    assert isinstance(typed, client.InternalError) and len(typed.error_id) == 8
    assert typed.error_id in typed.details() and "secret" not in typed.details()
