"""Container health probe: exit 0 when the service reports SERVING (gRPC health), else 1.

    python -m services.healthcheck                      # $IMAGEGEN_HEALTH_PORT (else $IMAGEGEN_PORT), overall
    python -m services.healthcheck --service imagegen.v1.Txt2Img --addr 127.0.0.1:50051
    python -m services.healthcheck --http http://127.0.0.1:7860/   # the gateway

Used by the Dockerfile's HEALTHCHECK and compose; Kubernetes uses its built-in gRPC probes.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from imagegen.v1.contract import TXT2IMG


def grpc_serving(address: str, service: str, timeout: float) -> tuple[bool, str]:
    from services.client import ClientSecurity

    # With TLS on (IMAGEGEN_TLS_CA, and a client certificate for mutual TLS), probe over TLS too.
    with ClientSecurity.from_env().channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as err:
            return False, f"{address}: {err.code().name}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return status == "SERVING", f"{address} {service or '(overall)'}: {status}"


def http_ok(url: str, timeout: float) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return reply.status == 200, f"{url}: HTTP {reply.status}"
    except OSError as err:
        return False, f"{url}: {err}"


def default_port(environ) -> str:
    """The service's probe port when it has one (it answers under any load, see core/rpc/probes.py)."""
    health = environ.get("IMAGEGEN_HEALTH_PORT", "")
    if health not in ("", "-1", "0"):
        return health
    return environ.get("IMAGEGEN_PORT", str(TXT2IMG.port))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.healthcheck", description=__doc__.split("\n")[0])
    parser.add_argument("--addr", default=f"127.0.0.1:{default_port(os.environ)}",
                        help="default: the probe port IMAGEGEN_HEALTH_PORT, else IMAGEGEN_PORT")
    parser.add_argument("--service", default="", help="health service name; empty = the whole server")
    parser.add_argument("--http", default=None, help="check this URL answers 200 instead (the gateway)")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    ok, detail = http_ok(args.http, args.timeout) if args.http else grpc_serving(args.addr, args.service, args.timeout)
    print(detail)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
