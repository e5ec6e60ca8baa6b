"""The probe port (--health-port): a second, small gRPC server with health and GetInfo only.

gRPC Python's server handles all its completion-queue events on one poller thread, and that thread
copies each received message into Python (holding the GIL) before it gets to the next event. Under a
burst of big uploads (40 inputs of 50 MB are within the limits) a health check on the service's own port
waited seconds behind those copies. This server has its own completion queue, poller thread and handler
threads, and takes no uploads (a GetInfo or health request is its largest), so probes get through.
"""

from __future__ import annotations

from concurrent import futures

import grpc
from grpc_health.v1 import health_pb2_grpc

from imagegen.v1 import imagegen_pb2 as pb

# Probes are quick, and a Watch holds no thread (the health servicer is non-blocking).
_THREADS = 4
_MAX_RECEIVE = 64 * 1024  # far above a HealthCheckRequest or a GetInfoRequest


def create_probe_server(service_name: str, health_servicer, get_info, interceptors: list, max_send: int,
                        thread_prefix: str) -> grpc.Server:
    """Not bound nor started: the service's health servicer (one status, both ports) and its GetInfo,
    behind the same interceptors (token, metrics, errors) as the service's own port."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix=f"{thread_prefix}-probe"),
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", _MAX_RECEIVE),
            ("grpc.max_send_message_length", max_send),
            ("grpc.so_reuseport", 0),
        ],
    )
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service_name, {
        "GetInfo": grpc.unary_unary_rpc_method_handler(
            get_info, request_deserializer=pb.GetInfoRequest.FromString,
            response_serializer=pb.ServiceInfo.SerializeToString),
    }),))
    return server


class Servers:
    """The service's server and, when there is one, its probe server: started and stopped together
    (what `create_server` returns; the probe port is `probe_port`, None without one)."""

    def __init__(self, main: grpc.Server, probe: grpc.Server | None = None, probe_port: int | None = None):
        self.main, self.probe, self.probe_port = main, probe, probe_port

    def start(self) -> None:
        self.main.start()
        if self.probe is not None:
            self.probe.start()

    def stop(self, grace: float | None):
        """As grpc.Server.stop: an event set once the service's server has stopped. Probes get answers
        (NOT_SERVING while draining) until then."""
        stopped = self.main.stop(grace)
        if self.probe is not None:
            stopped.wait()
            self.probe.stop(0).wait()  # before the interpreter exits: a live server there aborts it
        return stopped
