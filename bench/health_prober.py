"""Times gRPC health checks on some addresses until stdin closes, one thread each; prints them as JSON.

A process of its own, so that the uploads the benchmark sends (and their serialisation, holding that
process's GIL) never delay the checks being timed: `python -m bench.health_prober ADDR [ADDR ...]`.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def probe(address: str, done: threading.Event, answers: list) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while not done.is_set():
            started = time.monotonic()
            try:
                status = health_pb2.HealthCheckResponse.ServingStatus.Name(
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=60).status)
            except grpc.RpcError as err:
                status = err.code().name
            answers.append((time.monotonic() - started, status))
            time.sleep(0.05)


def main(addresses: list[str]) -> int:
    done, answers = threading.Event(), {address: [] for address in addresses}
    threads = [threading.Thread(target=probe, args=(address, done, answers[address]))
               for address in addresses]
    for thread in threads:
        thread.start()
    print("ready", flush=True)
    sys.stdin.read()  # until the benchmark closes it
    done.set()
    for thread in threads:
        thread.join()
    print(json.dumps(answers), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
