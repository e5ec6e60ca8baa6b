"""The probe port's own process: it answers while the service's GIL is held, reads a stopped service as
NOT_SERVING and a draining one too, serves GetInfo whatever its request holds, and ends with the service."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import TXT2IMG
from services.client import ImageGenClient, Result
from services.core.rpc.probe_child import STALE_S
from tests.conftest import CACHE_DIR, RunningService, free_port, request_for, wait_for

ROOT = Path(__file__).resolve().parents[2]

# Runs in a process of its own (the test's process is the service, its GIL held): health on both
# ports, timed. Prints "ready" once both channels are up, waits for a line, then probes for a while.
_PROBER = r"""
import json, sys, threading, time
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

probe_address, main_address, window = sys.argv[1], sys.argv[2], float(sys.argv[3])

def checker(address):
    stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(address))
    def check():
        started = time.monotonic()
        status = stub.Check(health_pb2.HealthCheckRequest(), timeout=60).status
        return time.monotonic() - started, health_pb2.HealthCheckResponse.ServingStatus.Name(status)
    return check

probe, main = checker(probe_address), checker(main_address)
probe(), main()
print("ready", flush=True)
sys.stdin.readline()
time.sleep(0.3)  # the service's GIL is taken by now
main_answer = []
waiter = threading.Thread(target=lambda: main_answer.append(main()))
waiter.start()
answers, end = [], time.monotonic() + window
while time.monotonic() < end:
    answers.append(probe())
    time.sleep(0.02)
waiter.join()
print(json.dumps({"probe": answers, "main": main_answer[0]}), flush=True)
"""


def test_the_probe_port_answers_health_while_the_services_gil_is_held():
    service = RunningService("txt2img", "--health-port", "0", "--warmup", "false")
    hold_s = 4.0
    try:
        probe_address = f"127.0.0.1:{service.server.probe_port}"
        with ImageGenClient("txt2img", probe_address) as probe:
            assert wait_for(lambda: probe.health() == "SERVING", timeout=5)
        prober = subprocess.Popen(
            [sys.executable, "-c", _PROBER, probe_address, service.address, str(hold_s - 1)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert prober.stdout.readline().strip() == "ready"
        prober.stdin.write("go\n")
        prober.stdin.flush()
        # libc's sleep through PyDLL keeps the GIL: no thread of this process runs meanwhile, as when
        # gRPC copies big uploads into Python, only longer.
        threading.Thread(target=ctypes.PyDLL(None).sleep, args=(int(hold_s),)).start()
        out, _ = prober.communicate(timeout=60)
        measured = json.loads(out.splitlines()[-1])
        main_took, main_status = measured["main"]
        assert main_took > 1.5, measured  # the service's own port waited for the GIL: it was held
        assert main_status == "SERVING"
        assert len(measured["probe"]) >= 5, measured
        assert {status for _took, status in measured["probe"]} == {"SERVING"}  # a held GIL is no hang
        worst = max(took for took, _status in measured["probe"])
        assert worst < 1.0, f"the probe port took up to {worst:.3f}s; --port {main_took:.2f}s"
        print(f"GIL held {hold_s:.0f}s: probe port worst {worst * 1000:.1f} ms, --port {main_took:.2f}s")
    finally:
        service.stop()


def test_health_there_is_not_serving_while_the_service_drains():
    service = RunningService("txt2img", "--health-port", "0", "--warmup", "false")
    try:
        with ImageGenClient("txt2img", f"127.0.0.1:{service.server.probe_port}") as probe:
            assert wait_for(lambda: probe.health() == "SERVING", timeout=5)
            call = service.client.stream(request_for("txt2img", steps=60, width=128, height=128))
            next(call)  # in flight
            draining = threading.Thread(target=service.runtime.drain, args=(60,))
            draining.start()
            assert wait_for(lambda: probe.health() == "NOT_SERVING", timeout=5)
            assert service.client.health() == "NOT_SERVING"
            events = list(call)  # the work in flight still finishes
            assert isinstance(events[-1], Result)
            draining.join(30)
            service.runtime.health.set("", health_pb2.HealthCheckResponse.SERVING)  # ignored once draining
            time.sleep(0.5)
            assert probe.health() == "NOT_SERVING"
    finally:
        service.stop()


def test_get_info_there_answers_whatever_its_request_holds():
    service = RunningService("txt2img", "--health-port", "0", "--warmup", "false")
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{service.server.probe_port}")
        with channel:
            get_info = channel.unary_unary(f"/{TXT2IMG.full_service_name}/GetInfo",
                                           response_deserializer=pb.ServiceInfo.FromString)
            # Field 1 set (a rescan, on a contract that has it) and an unknown field 99: the cached info.
            assert wait_for(lambda: get_info(b"\x08\x01\x98\x06\x01", timeout=5) == service.client.info(), 5)
    finally:
        service.stop()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has ended; whoever adopted it reaps it


def test_a_stopped_service_reads_not_serving_and_a_killed_one_takes_the_probe_port_with_it():
    port, probe_port = free_port(), free_port()
    environ = {**os.environ, "IMAGEGEN_CACHE_DIR": str(CACHE_DIR), "HF_HUB_OFFLINE": "1",
               "IMAGEGEN_METRICS_PORT": "-1"}
    proc = subprocess.Popen([sys.executable, "-m", "services.txt2img", "--model", "tiny", "--port", str(port),
                             "--health-port", str(probe_port), "--warmup", "false"],
                            cwd=ROOT, env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        with ImageGenClient("txt2img", f"127.0.0.1:{probe_port}", retries=0) as probe:
            assert probe.wait_until_serving(120)
            (child,) = _children(proc.pid)
            proc.send_signal(signal.SIGSTOP)  # hung: no heartbeat
            stopped = time.monotonic()
            assert wait_for(lambda: probe.health(timeout=1) == "NOT_SERVING", timeout=STALE_S + 10)
            assert time.monotonic() - stopped > STALE_S - 2  # a short silence is not a hang
            proc.send_signal(signal.SIGCONT)
            assert wait_for(lambda: probe.health(timeout=1) == "SERVING", timeout=10)
            proc.kill()
            proc.wait(10)
            assert wait_for(lambda: not _running(child), timeout=10)  # no orphan answering for the dead
            assert probe.health(timeout=2) == "UNREACHABLE"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
        proc.wait(10)
