"""Server bootstrap shared by the three modes: health, reflection, interceptors, graceful stop.

`create_server` builds and binds (tests use it with port 0); `serve` runs one until SIGTERM. With
--health-port, health and GetInfo are also served on a port of their own, by a child process (probes.py
says why).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from concurrent import futures

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from imagegen.v1 import imagegen_pb2 as pb

from ..config import ServiceConfig, load_config
from ..mode import Mode
from ..work.runtime import ModeRuntime
from .interceptors import ErrorInterceptor, MetricsInterceptor, TokenInterceptor
from .probes import ProbeProcess, PushedHealth, Servers
from .security import BindError, TlsFiles, bind_port
from .servicer import ModeServicer

log = logging.getLogger("imagegen")
# Handler threads beyond the generation calls' places (runtime.max_calls): health, info, reflection
# always find one, however many generation calls arrive.
_SPARE_THREADS = 16


def create_server(mode: Mode, config: ServiceConfig) -> tuple[Servers, int, ModeRuntime]:
    """Build the server for `mode` (and its probe server, with a health port) and bind them. Not
    started; the model is not loaded yet."""
    health_servicer = PushedHealth()  # its statuses also go to the probe port's process
    runtime = ModeRuntime(mode, config, health_servicer)
    max_bytes = config.limits.max_message_bytes
    # Metrics outermost: they see the status code the error interceptor (or the token check) set.
    interceptors = [
        MetricsInterceptor(runtime.metrics, mode.full_service_name),
        *([TokenInterceptor(config.auth_token, mode.full_service_name)] if config.auth_token else []),
        ErrorInterceptor(),
    ]
    server = grpc.server(
        futures.ThreadPoolExecutor(
            max_workers=runtime.max_calls + _SPARE_THREADS, thread_name_prefix=f"{mode.name}-rpc"
        ),
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", max_bytes),
            ("grpc.max_send_message_length", max_bytes),
            ("grpc.so_reuseport", 0),
        ],
    )
    servicer = ModeServicer(runtime)
    mode.contract.add_servicer(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (
            mode.full_service_name,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    tls = TlsFiles(config.tls_cert, config.tls_key, config.tls_client_ca)
    port = bind_port(server, f"{config.host}:{config.port}", tls)
    if config.health_port < 0:
        return Servers(server), port, runtime
    try:
        probe = ProbeProcess(f"{config.host}:{config.health_port}", tls, config.auth_token,
                             mode.full_service_name, max_bytes, config.log_level)
    except BindError as exc:
        server.stop(0)
        raise BindError(f"health port: {exc}") from None

    def info() -> bytes:  # what the probe port answers to any GetInfo: the service's own answer
        return servicer.GetInfo(pb.GetInfoRequest(), None).SerializeToString()

    return Servers(server, probe, health_servicer, info), port, runtime


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # diffusers and transformers are chatty at INFO (progress bars, deprecations).
    for noisy in ("diffusers", "transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def serve(mode: Mode, config: ServiceConfig) -> int:
    """Run one mode's service until SIGTERM/SIGINT; returns the process exit code."""
    from ..models.loading import ModelLoadError

    _setup_logging(config.log_level)
    try:
        server, port, runtime = create_server(mode, config)
    except BindError as exc:
        print(f"error: {config.mode}: {exc}", file=sys.stderr)
        return 2
    server.start()
    log.info("%s listening on %s:%d (NOT_SERVING until the model is loaded)", config.mode, config.host, port)
    if server.probe_port is not None:
        log.info("%s health and GetInfo also on %s:%d", config.mode, config.host, server.probe_port)
    if config.metrics_port >= 0:
        try:
            metrics_port = runtime.metrics.start_http(config.host, config.metrics_port)
        except OSError as exc:
            server.stop(0)
            print(f"error: {config.mode}: could not serve metrics on {config.host}:{config.metrics_port}: {exc}",
                  file=sys.stderr)
            return 2
        log.info("%s metrics on http://%s:%d/metrics", config.mode, config.host, metrics_port)

    stop = threading.Event()
    failure: list[str] = []

    def on_signal(signum, _frame):
        log.info("%s received %s: draining", config.mode, signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def on_hangup(_signum, _frame):
        # The rescan reads headers: off the main thread, which must stay free to see SIGTERM.
        log.info("%s received SIGHUP: rescanning the models folder", config.mode)
        threading.Thread(target=runtime.rescan, args=("SIGHUP",), name="models-rescan", daemon=True).start()

    signal.signal(signal.SIGHUP, on_hangup)

    def load():
        try:
            runtime.load()
        except ModelLoadError as exc:
            failure.append(str(exc))
            stop.set()
        except Exception as exc:  # noqa: BLE001 - reported on one line; details in the debug log
            log.debug("load failed", exc_info=True)
            failure.append(f"could not start: {type(exc).__name__}: {exc}")
            stop.set()

    threading.Thread(target=load, name="loader", daemon=True).start()
    while not stop.wait(0.5):
        pass

    if failure:
        server.stop(0)
        print(f"error: {config.mode}: {failure[0]}", file=sys.stderr)
        return 2
    started = time.monotonic()
    finished = runtime.drain(config.grace_s)
    server.stop(max(0.0, config.grace_s - (time.monotonic() - started))).wait()
    runtime.stop()
    runtime.metrics.stop_http()
    log.info("%s stopped (%s)", config.mode, "drained" if finished else "grace period ran out")
    return 0


def main(mode: Mode, argv=None) -> int:
    """A mode's `python -m services.<mode>`: settings first, then the service."""
    return serve(mode, load_config(mode, argv))
