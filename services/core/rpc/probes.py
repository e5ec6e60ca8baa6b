"""The probe port (--health-port): health and GetInfo only, served by a child process of their own.

gRPC Python's server copies each received message into Python holding the GIL, and every thread of the
service waits for that lock. Under a burst of big uploads (40 inputs of 50 MB are within the limits) a
health check on the service's own port waited seconds; a second gRPC server in the same process still
waited up to 1.3 s for the GIL. So the probe port lives in a small child process (probe_child.py) with
its own interpreter: the service pushes its health and its serialized ServiceInfo there as they change,
and a heartbeat, so a hung service reads as NOT_SERVING and a dead one ends the child.
"""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable

import grpc
from grpc_health.v1 import health

from .probe_child import BEAT, BEAT_S, HEALTH, INFO, SETTINGS, write_frame
from .security import BindError, TlsFiles

log = logging.getLogger(__name__)
_ROOT = Path(__file__).resolve().parents[3]  # where `services` is importable from, for the child
_START_S = 30.0  # the child imports grpc and binds: well under a second, unless the machine is swamped


class PushedHealth(health.HealthServicer):
    """The service's health servicer; every change is also told to `on_change` (the probe process)."""

    def __init__(self):
        super().__init__(experimental_non_blocking=True)
        self._told: dict[str, int] = {}
        self._told_draining = False
        # Changes are told in the order made; reentrant, as grpc's shutdown calls set. (Our names keep
        # apart from grpc's HealthServicer's own attributes.)
        self._told_lock = threading.RLock()
        self.on_change: Callable[[dict], None] | None = None

    def set(self, service, status):
        with self._told_lock:
            super().set(service, status)
            if not self._told_draining:  # as grpc's: statuses after a graceful shutdown are ignored
                self._told[service] = status
            self._tell()

    def enter_graceful_shutdown(self):
        with self._told_lock:
            super().enter_graceful_shutdown()
            self._told_draining = True
            self._tell()

    def snapshot(self) -> dict:
        return {"statuses": dict(self._told), "draining": self._told_draining}

    def attach(self, on_change: Callable[[dict], None]) -> None:
        with self._told_lock:
            self.on_change = on_change
            self._tell()

    def _tell(self) -> None:
        if self.on_change is not None:
            self.on_change(self.snapshot())


class ProbeProcess:
    """The probe port's child process, from the service's side. Created bound (BindError otherwise) and
    answering NOT_SERVING; `start` attaches the service's health and starts the one thread that writes
    to the child: each health change at once, the ServiceInfo whenever its bytes change, and a heartbeat
    every BEAT_S. One writer: a child that stops reading stalls that thread, never the service's calls
    or its drain. `stop` closes the child's stdin, which ends it."""

    def __init__(self, address: str, tls: TlsFiles, token: str | None, service_name: str, max_send: int,
                 log_level: str = "INFO"):
        paths = os.pathsep.join(filter(None, (str(_ROOT), os.environ.get("PYTHONPATH"))))
        self._proc = subprocess.Popen([sys.executable, "-m", "services.core.rpc.probe_child"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      env={**os.environ, "PYTHONPATH": paths})
        self._wake, self._stopped = threading.Event(), threading.Event()
        self._health: dict | None = None  # the latest snapshot not yet written
        self._health_lock = threading.Lock()
        self._sent_info: bytes | None = None
        self._writer: threading.Thread | None = None
        settings = {"address": address, "service": service_name, "token": token, "max_send": max_send,
                    "log_level": log_level, "cert": _path(tls.cert), "key": _path(tls.key),
                    "client_ca": _path(tls.client_ca)}
        self._send(SETTINGS, json.dumps(settings).encode())  # the token goes by pipe, never on a command line
        self.port = self._handshake()

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _handshake(self) -> int:
        ready, _, _ = select.select([self._proc.stdout], [], [], _START_S)
        line = self._proc.stdout.readline() if ready else b""
        self._proc.stdout.close()
        reply = json.loads(line) if line.strip() else {}
        if "port" in reply:
            return reply["port"]
        self._end()
        started = f"the probe process did not start (exit code {self._proc.returncode})"
        raise BindError(reply.get("error") or started)

    def start(self, health_servicer: PushedHealth, get_info: Callable[[], bytes]) -> None:
        self._get_info = get_info
        health_servicer.attach(self._health_changed)
        self._writer = threading.Thread(target=self._write, name="probe-writer", daemon=True)
        self._writer.start()

    def _health_changed(self, snapshot: dict) -> None:
        with self._health_lock:
            self._health = snapshot
        self._wake.set()

    def _write(self) -> None:
        while not self._stopped.is_set():
            woken = self._wake.wait(BEAT_S)
            self._wake.clear()
            with self._health_lock:
                health, self._health = self._health, None
            # The info first: a new status (SERVING once loaded) comes with the info that goes with it.
            told = self._tell_info()
            if health is not None:
                self._send(HEALTH, json.dumps(health).encode())
            elif not told and not woken:
                self._send(BEAT)

    def _tell_info(self) -> bool:
        """Send the ServiceInfo if its bytes changed since last sent; whether it did."""
        try:
            info = self._get_info()
        except Exception:  # noqa: BLE001 - the probe keeps the last info; the service's port reports it
            log.debug("GetInfo for the probe port failed", exc_info=True)
            return False
        if info == self._sent_info:
            return False
        self._sent_info = info
        self._send(INFO, info)
        return True

    def _send(self, kind: bytes, payload: bytes = b"") -> None:
        if self._stopped.is_set():
            return
        try:
            write_frame(self._proc.stdin, kind, payload)
        except (OSError, ValueError):  # the child died: probes there fail, as they should for a broken pod
            log.error("the probe process (port %s) has gone (exit code %s)", getattr(self, "port", "?"),
                      self._proc.poll())
            self._stopped.set()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()
        if self._writer is not None:
            self._writer.join(2)
            if self._writer.is_alive():  # stuck writing to a child that stopped reading
                self._proc.kill()
                self._writer.join()
        self._end()

    def _end(self) -> None:
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def _path(path: Path | None) -> str | None:
    return None if path is None else str(path)


class Servers:
    """The service's server and, when there is one, its probe process: started and stopped together
    (what `create_server` returns; the probe port is `probe_port`, None without one)."""

    def __init__(self, main: grpc.Server, probe: ProbeProcess | None = None,
                 health_servicer: PushedHealth | None = None, get_info: Callable[[], bytes] | None = None):
        self.main, self.probe = main, probe
        self.probe_port = probe.port if probe is not None else None
        self._health, self._get_info = health_servicer, get_info

    def start(self) -> None:
        self.main.start()
        if self.probe is not None:
            self.probe.start(self._health, self._get_info)

    def stop(self, grace: float | None):
        """As grpc.Server.stop: an event set once the service's server has stopped. Probes get answers
        (NOT_SERVING while draining) until then."""
        stopped = self.main.stop(grace)
        if self.probe is not None:
            stopped.wait()
            self.probe.stop()
        return stopped
