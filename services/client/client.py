"""ImageGenClient: one mode's service over one channel, with deadlines, retries and typed results."""

from __future__ import annotations

import random
import threading
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import mode as mode_contract

from .control import as_unit
from .errors import NotResponding, QueueFull, ServiceError, from_rpc_error
from .events import Event, from_message
from .security import ClientSecurity

MiB = 1024 * 1024


class EventStream:
    """A GenerateStream call as typed events (Queued, Progress..., Result), retried while the queue is full.

    Iterate it; `cancel()` stops the work. Only a refusal before the first event is retried, so no
    event is ever seen twice. Failures raise the typed errors of `errors`.

    `first_event_timeout` (seconds, None: no bound): a service queues a request, and says so, at once;
    a call that hears nothing for that long is cancelled as NotResponding. A stopped (not dead) process
    keeps its connections open, so without this the call would wait for its whole deadline.
    """

    def __init__(self, client: "ImageGenClient", request, timeout: float,
                 first_event_timeout: float | None = None):
        self._client = client
        self._request = request
        self._deadline = time.monotonic() + timeout
        self._cancelled = False
        self._first_event_timeout = first_event_timeout
        self._lock = threading.Lock()  # the watchdog and the first message never both win
        self._answered = self._stalled = False
        self._watchdog: threading.Timer | None = None
        self._call = self._start(timeout)
        self._events = self._iterate()

    def _start(self, timeout: float):
        """A new call, watched until its first message when a bound is set."""
        call = self._client._stream_call(self._request, timeout)
        with self._lock:
            self._call, self._answered = call, False
        if self._first_event_timeout is not None:
            self._watchdog = threading.Timer(self._first_event_timeout, self._stall, args=(call,))
            self._watchdog.daemon = True
            self._watchdog.start()
        return call

    def _stall(self, call) -> None:
        with self._lock:
            if self._answered or call is not self._call:
                return
            self._stalled = True
        call.cancel()

    def _heard(self) -> None:
        with self._lock:
            self._answered = True
        if self._watchdog is not None:
            self._watchdog.cancel()

    def _iterate(self):
        attempt = 0
        try:
            while True:
                seen = False
                try:
                    for message in self._call:
                        if not seen:
                            seen = True
                            self._heard()
                        yield from_message(message)
                    return
                except grpc.RpcError as err:
                    if self._stalled and not self._cancelled:
                        raise NotResponding.after(self._first_event_timeout, self._client) from None
                    error = self._client._typed(err)
                    delay = (None if seen or self._cancelled
                             else self._client._retry_delay(error, attempt, self._deadline))
                    if delay is None:
                        raise error from None
                self._heard()  # no watchdog while waiting to retry
                time.sleep(delay)
                attempt += 1
                self._start(max(0.001, self._deadline - time.monotonic()))
        finally:
            self._heard()

    def __iter__(self):
        return self

    def __next__(self) -> Event:
        return next(self._events)

    def cancel(self) -> None:
        self._cancelled = True
        self._call.cancel()


class ImageGenClient:
    """One mode's service over one channel. Every call has a deadline (`timeout`, seconds).

    `address` is any gRPC target: host:port, dns:///name:port (all replicas behind a DNS name, in
    round robin), or ipv4:host1:port1,host2:port2; default: the mode's port on this machine.

    A full queue (QueueFull, with the service's retry hint) is retried up to `retries` times, waiting
    the hint or an exponential backoff from `backoff_s`, whichever is longer, with jitter, and never
    past the call's deadline. Failures raise the typed errors of `services.client.errors`.
    """

    def __init__(
        self,
        mode: str,
        address: str | None = None,
        *,
        timeout: float = 300.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        max_message_bytes: int = 256 * MiB,
        security: ClientSecurity | None = None,
        channel: grpc.Channel | None = None,
    ):
        self.contract = mode_contract(mode)
        self.mode = mode
        self.address = address or self.contract.default_address
        self.timeout = timeout
        self.retries = retries
        self.backoff_s = backoff_s
        self.security = security or ClientSecurity()
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            # Spread calls over every address the target resolves to: a headless Service's
            # pods (dns:///txt2img:50051) or a list (ipv4:10.0.0.1:50051,10.0.0.2:50051).
            ("grpc.lb_policy_name", "round_robin"),
            # A restarted service is found again within seconds, not after minutes of backoff.
            ("grpc.initial_reconnect_backoff_ms", 500),
            ("grpc.max_reconnect_backoff_ms", 5000),
        ]
        self.channel = channel if channel is not None else self.security.channel(self.address, options)
        self.metadata = self.security.metadata
        self.stub = self.contract.stub(self.channel)
        self._health = health_pb2_grpc.HealthStub(self.channel)

    def _typed(self, err: grpc.RpcError) -> ServiceError:
        return from_rpc_error(err, self.mode, self.address)

    def _retry_delay(self, error: ServiceError, attempt: int, deadline: float) -> float | None:
        """Seconds to wait before retrying, or None when the error is not worth retrying."""
        if not isinstance(error, QueueFull) or attempt >= self.retries:
            return None
        delay = max(error.retry_after_s or 0.0, self.backoff_s * 2**attempt) * random.uniform(1.0, 1.25)
        return delay if time.monotonic() + delay < deadline else None

    def _stream_call(self, request, timeout: float):
        return self.stub.GenerateStream(request, timeout=timeout, metadata=self.metadata)

    def generate(self, request, timeout: float | None = None) -> pb.GenerateResponse:
        return self._unary(self.stub.Generate, request, timeout)

    def upscale(self, request: pb.UpscaleRequest, timeout: float | None = None) -> pb.UpscaleResponse:
        """The Upscale call (the services whose contract has it: img2img), retried as generate is."""
        if not self.contract.upscales:
            raise ValueError(f"the {self.mode} service has no Upscale (img2img has)")
        return self._unary(self.stub.Upscale, request, timeout)

    def _unary(self, method, request, timeout: float | None):
        deadline = time.monotonic() + (timeout or self.timeout)
        attempt = 0
        while True:
            try:
                return method(request, timeout=max(0.001, deadline - time.monotonic()), metadata=self.metadata)
            except grpc.RpcError as err:
                error = self._typed(err)
                delay = self._retry_delay(error, attempt, deadline)
                if delay is None:
                    raise error from None
            time.sleep(delay)
            attempt += 1

    def stream(self, request, timeout: float | None = None,
               first_event_timeout: float | None = None) -> EventStream:
        """The GenerateStream call as typed events: iterate it; `.cancel()` stops the work.
        first_event_timeout: see EventStream (a hung service fails fast as NotResponding)."""
        return EventStream(self, request, timeout or self.timeout, first_event_timeout)

    def info(self, timeout: float = 10.0, rescan: bool = False) -> pb.ServiceInfo:
        """The service's facts; `rescan`: it reads its models folder again first (new checkpoints listed)."""
        try:
            return self.stub.GetInfo(pb.GetInfoRequest(rescan_models=rescan), timeout=timeout,
                                     metadata=self.metadata)
        except grpc.RpcError as err:
            raise self._typed(err) from None

    def preprocess(self, unit, width: int = 0, height: int = 0, seed: int | None = None,
                   timeout: float = 60.0) -> pb.Image:
        """The Preprocess RPC: the map `unit` (a ControlUnit or control_unit's keywords as a dict) gives, as a
        PNG Image; width and height (0: the image's own) fit it to an output size by the unit's resize mode."""
        request = pb.PreprocessRequest(unit=as_unit(unit), width=width, height=height)
        if seed is not None:
            request.seed = seed
        try:
            return self.stub.Preprocess(request, timeout=timeout, metadata=self.metadata).image
        except grpc.RpcError as err:
            raise self._typed(err) from None

    def health(self, timeout: float = 5.0) -> str:
        """SERVING, NOT_SERVING, or UNREACHABLE."""
        try:
            reply = self._health.Check(
                health_pb2.HealthCheckRequest(service=self.contract.full_service_name), timeout=timeout
            )
        except grpc.RpcError:
            return "UNREACHABLE"
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    def wait_until_serving(self, timeout: float = 120.0, interval: float = 0.25) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.health(timeout=min(5.0, max(0.1, deadline - time.monotonic()))) == "SERVING":
                return True
            time.sleep(interval)
        return False

    def close(self) -> None:
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
