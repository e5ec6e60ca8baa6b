"""The probe port's own process (`python -m services.core.rpc.probe_child`, started by probes.py).

It answers health and GetInfo from what the service last pushed, with its own interpreter and so its
own GIL: however long the service's threads hold theirs (deserialising 40 uploads of 50 MB, say),
nothing here waits for it. The service writes frames on this process's stdin, its settings first; the
bound port (or why not) goes back as one JSON line on stdout.

- A hung or stopped service reads as NOT_SERVING once no frame has come for STALE_S (the service sends
  one every BEAT_S), and as itself again when frames resume.
- The service's end going away (EOF on stdin, or this process handed to another parent) ends this one:
  never an orphan answering for a dead service.
- GetInfo answers the ServiceInfo last pushed, whatever its request holds (it is never parsed): anything
  a request asks the service to do (a rescan of the models) goes to the service's own port.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import sys
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import BinaryIO

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from .interceptors import TokenInterceptor
from .security import BindError, TlsFiles, bind_port

log = logging.getLogger("imagegen.probe")

# A frame: its kind (one byte) and its payload's length, then the payload.
_HEADER = struct.Struct(">cI")
SETTINGS, HEALTH, INFO, BEAT = b"S", b"H", b"I", b"B"
BEAT_S = 1.0
# Load must not read as a hang: under the largest burst the limits admit, a health check on the service's
# own port (which waits for the GIL as the heartbeat thread does, and for gRPC's poller besides) took at
# most 3-4.5 s (bench: "probe"). A hang should still leave traffic soon: 10 s is about the Kubernetes
# readiness window (2 failures x 5 s), and far inside liveness's 60 s.
STALE_S = 10.0
_THREADS = 4  # probes are quick, and a Watch holds no thread (the health servicer is non-blocking)
_MAX_RECEIVE = 64 * 1024  # far above a HealthCheckRequest or a GetInfoRequest


def write_frame(stream: BinaryIO, kind: bytes, payload: bytes = b"") -> None:
    stream.write(_HEADER.pack(kind, len(payload)) + payload)
    stream.flush()


def _read_exact(stream: BinaryIO, size: int) -> bytes | None:
    data = stream.read(size)
    return data if data is not None and len(data) == size else None


def read_frame(stream: BinaryIO) -> tuple[bytes, bytes] | None:
    """The next (kind, payload), or None at the end of the stream (the service is gone)."""
    header = _read_exact(stream, _HEADER.size)
    if header is None:
        return None
    kind, size = _HEADER.unpack(header)
    payload = _read_exact(stream, size) if size else b""
    return None if payload is None else (kind, payload)


class Pushed:
    """What the service last said: its health statuses (into this process's health servicer) and its
    ServiceInfo's bytes; NOT_SERVING while it has been silent for STALE_S."""

    def __init__(self, servicer: health.HealthServicer, names: tuple[str, ...]):
        self.servicer = servicer
        self.info: bytes | None = None
        # NOT_SERVING (not NOT_FOUND) until the service says otherwise.
        self._statuses: dict[str, int] = dict.fromkeys(names, health_pb2.HealthCheckResponse.NOT_SERVING)
        self._show(self._statuses)
        self._heard = time.monotonic()
        self._silent = False
        self._lock = threading.Lock()

    def apply(self, kind: bytes, payload: bytes) -> None:
        with self._lock:
            silent_for, self._heard = time.monotonic() - self._heard, time.monotonic()
            if kind == INFO:
                self.info = payload
            elif kind == HEALTH:
                told = json.loads(payload)
                self._statuses = told["statuses"]
                if told["draining"]:
                    self.servicer.enter_graceful_shutdown()  # final: later statuses are ignored
            if kind == HEALTH or self._silent:
                if self._silent:
                    log.info("the service speaks again after %.1fs", silent_for)
                self._silent = False
                self._show(self._statuses)

    def check_silence(self) -> None:
        with self._lock:
            if not self._silent and time.monotonic() - self._heard > STALE_S:
                log.warning("no word from the service for %.0fs: NOT_SERVING until it speaks again", STALE_S)
                self._silent = True
                self._show(dict.fromkeys(self._statuses, health_pb2.HealthCheckResponse.NOT_SERVING))

    def _show(self, statuses: dict[str, int]) -> None:
        for name, status in statuses.items():
            self.servicer.set(name, status)


def build_server(settings: dict, pushed: Pushed) -> grpc.Server:
    """Health and the service's GetInfo, behind the service's token check (health stays open)."""
    service, token = settings["service"], settings.get("token")
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix="probe"),
        interceptors=[TokenInterceptor(token, service)] if token else [],
        options=[
            ("grpc.max_receive_message_length", _MAX_RECEIVE),
            ("grpc.max_send_message_length", settings["max_send"]),
            ("grpc.so_reuseport", 0),
        ],
    )
    health_pb2_grpc.add_HealthServicer_to_server(pushed.servicer, server)

    def get_info(_request: bytes, context):
        if pushed.info is None:
            context.abort(grpc.StatusCode.UNAVAILABLE, "the service has not told its info yet; retry shortly")
        return pushed.info

    # No (de)serializers: the request's bytes are ignored, the pushed bytes are the answer.
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, {
        "GetInfo": grpc.unary_unary_rpc_method_handler(get_info),
    }),))
    return server


def _watch(pushed: Pushed, server: grpc.Server, parent: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:  # the service died, while something it forked still holds our stdin
            log.warning("the service is gone: the probe port closes")
            server.stop(0).wait()
            os._exit(0)
        pushed.check_silence()


def _tls(settings: dict) -> TlsFiles:
    paths = (settings.get(key) for key in ("cert", "key", "client_ca"))
    return TlsFiles(*(Path(path) if path else None for path in paths))


def main() -> int:
    parent = os.getppid()
    stdin, reply = sys.stdin.buffer, sys.stdout
    first = read_frame(stdin)
    if first is None or first[0] != SETTINGS:
        return 2
    settings = json.loads(first[1])
    logging.basicConfig(level=settings.get("log_level", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    pushed = Pushed(health.HealthServicer(experimental_non_blocking=True), ("", settings["service"]))
    server = build_server(settings, pushed)
    try:
        port = bind_port(server, settings["address"], _tls(settings))
    except BindError as exc:
        print(json.dumps({"error": str(exc)}), file=reply, flush=True)
        return 2
    server.start()
    print(json.dumps({"port": port}), file=reply, flush=True)
    threading.Thread(target=_watch, args=(pushed, server, parent), name="probe-watch", daemon=True).start()
    while (frame := read_frame(stdin)) is not None:
        pushed.apply(*frame)
    server.stop(0).wait()  # the service closed our stdin (stopping) or died
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
