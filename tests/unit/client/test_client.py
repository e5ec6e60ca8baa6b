"""ImageGenClient._retry_delay: only a full queue is retried, with backoff, never past the deadline."""

import time

import grpc
import pytest

from imagegen.v1.contract import Reason
from services.client import errors
from services.client.client import ImageGenClient


@pytest.fixture
def client():
    client = ImageGenClient("txt2img", "127.0.0.1:1", retries=3, backoff_s=0.5)  # channels are lazy
    yield client
    client.close()


def queue_full(hint=None):
    error = errors.QueueFull(grpc.StatusCode.RESOURCE_EXHAUSTED, "the queue is full", Reason.QUEUE_FULL)
    error.retry_after_s = hint
    return error


def far():
    return time.monotonic() + 3600


def test_the_client_is_built_without_connecting(client):
    assert client.address == "127.0.0.1:1" and client.mode == "txt2img"
    assert (client.retries, client.backoff_s) == (3, 0.5)


@pytest.mark.parametrize("error", [
    errors.ModelLoading(grpc.StatusCode.UNAVAILABLE, "loading", Reason.MODEL_LOADING),
    errors.ShuttingDown(grpc.StatusCode.UNAVAILABLE, "draining", Reason.SHUTTING_DOWN),
    errors.Unreachable(grpc.StatusCode.UNAVAILABLE, "failed to connect"),
    errors.OutOfMemory(grpc.StatusCode.RESOURCE_EXHAUSTED, "oom", Reason.OUT_OF_MEMORY),
    errors.TooLarge(grpc.StatusCode.RESOURCE_EXHAUSTED, "message too large"),
    errors.InvalidInput(grpc.StatusCode.INVALID_ARGUMENT, "params.width: bad", Reason.INVALID_ARGUMENT),
])
def test_only_a_full_queue_is_retried(client, error):
    assert client._retry_delay(error, 0, far()) is None
    assert client._retry_delay(queue_full(), 0, far()) is not None


def test_at_most_retries_times(client):
    assert all(client._retry_delay(queue_full(), attempt, far()) is not None for attempt in range(3))
    assert client._retry_delay(queue_full(), 3, far()) is None
    no_retries = ImageGenClient("txt2img", "127.0.0.1:1", retries=0)
    try:
        assert no_retries._retry_delay(queue_full(), 0, far()) is None
    finally:
        no_retries.close()


@pytest.mark.parametrize("attempt, hint, floor", [
    (0, None, 0.5), (1, None, 1.0), (2, None, 2.0),  # exponential backoff from backoff_s
    (0, 3.0, 3.0), (2, 1.0, 2.0),  # the longer of the hint and the backoff
])
def test_waits_the_hint_or_the_backoff_with_up_to_25_percent_jitter(client, attempt, hint, floor):
    delays = [client._retry_delay(queue_full(hint), attempt, far()) for _ in range(200)]
    assert all(floor <= delay <= floor * 1.25 for delay in delays)
    assert max(delays) - min(delays) > 0.05 * floor  # jittered, not a fixed wait


def test_never_waits_past_the_deadline(client):
    assert client._retry_delay(queue_full(), 0, time.monotonic() + 0.4) is None  # backoff 0.5 s
    assert client._retry_delay(queue_full(hint=10.0), 0, time.monotonic() + 5.0) is None
    assert client._retry_delay(queue_full(hint=1.0), 0, time.monotonic() + 5.0) is not None
