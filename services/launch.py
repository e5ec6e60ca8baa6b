"""Run the three mode services, and the gateway, together in the foreground; Ctrl-C stops them all.

`make run` runs all four, `make services` only the services. Each is its own process, as in
production. The launcher waits until every service reports SERVING on the health service (and the
gateway answers HTTP), prints where they are, and on Ctrl-C or SIGTERM stops them gracefully.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request

from imagegen.v1.contract import MODES
from services.client import ImageGenClient


def service_command(mode: str, model: str, host: str, port: int, device: str) -> list[str]:
    return [sys.executable, "-m", f"services.{mode}", "--model", model, "--host", host,
            "--port", str(port), "--device", device]


class ProcessGroup:
    """Child processes started together and stopped together."""

    def __init__(self):
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, command: list[str]) -> None:
        self.procs[name] = subprocess.Popen(command)

    def exited(self) -> dict[str, int]:
        return {name: p.returncode for name, p in self.procs.items() if p.poll() is not None}

    def stop(self, grace: float) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_serving(targets: dict[str, str], group: ProcessGroup, timeout: float) -> str | None:
    """None when every target is SERVING; otherwise why not."""
    deadline = time.monotonic() + timeout
    pending = dict(targets)
    while pending and time.monotonic() < deadline:
        if group.exited():
            return "exited early: " + ", ".join(f"{n} (code {c})" for n, c in group.exited().items())
        for mode, address in list(pending.items()):
            with ImageGenClient(mode, address) as client:
                if client.health(timeout=1.0) == "SERVING":
                    del pending[mode]
        time.sleep(0.3)
    return f"not SERVING after {timeout:.0f}s: {', '.join(pending)}" if pending else None


def wait_http(url: str, group: ProcessGroup, timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if group.exited():
            return "exited early: " + ", ".join(f"{n} (code {c})" for n, c in group.exited().items())
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return None
        except OSError:
            time.sleep(0.3)
    return f"not answering at {url} after {timeout:.0f}s"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.launch", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=os.environ.get("IMAGEGEN_MODEL", "tiny"),
                        help="model for all three modes (default tiny) [IMAGEGEN_MODEL]")
    for mode in MODES:
        parser.add_argument(f"--{mode}-model", default=os.environ.get(f"IMAGEGEN_{mode.upper()}_MODEL"),
                            help=f"model for {mode} only [IMAGEGEN_{mode.upper()}_MODEL]")
        parser.add_argument(f"--{mode}-device", default=os.environ.get(f"IMAGEGEN_{mode.upper()}_DEVICE"),
                            help=f"device for {mode} only, e.g. cuda:1 [IMAGEGEN_{mode.upper()}_DEVICE]")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--base-port", type=int, default=None,
                        help="txt2img listens here, img2img on the next port, inpaint on the one after "
                             "(default: each mode's own port, 50051-50053)")
    parser.add_argument("--device", default=os.environ.get("IMAGEGEN_DEVICE", "auto"),
                        help="device for all three; set per service with cuda:N in production")
    parser.add_argument("--gateway", action=argparse.BooleanOptionalAction, default=True,
                        help="also run the Gradio gateway (default: yes)")
    parser.add_argument("--gateway-port", type=int, default=int(os.environ.get("GATEWAY_PORT", 7860)))
    parser.add_argument("--start-timeout", type=float, default=600.0)
    args = parser.parse_args(argv)

    group = ProcessGroup()
    stopping = []
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    targets = {}
    for offset, (mode, contract) in enumerate(MODES.items()):
        port = contract.port if args.base_port is None else args.base_port + offset
        model = getattr(args, f"{mode}_model") or args.model
        device = getattr(args, f"{mode}_device") or args.device
        group.start(mode, service_command(mode, model, args.host, port, device))
        targets[mode] = f"{args.host}:{port}"
    try:
        problem = wait_serving(targets, group, args.start_timeout) if not stopping else "stopped"
        if problem:
            print(f"launch: services {problem}", file=sys.stderr)
            return 1
        print("launch: all SERVING - " + ", ".join(f"{m} {a}" for m, a in targets.items()), flush=True)
        if args.gateway:
            command = [sys.executable, "-m", "gateway_ui", "--host", args.host, "--port", str(args.gateway_port)]
            for mode, address in targets.items():
                command += [f"--{mode}-addr", address]
            group.start("gateway", command)
            url = f"http://{args.host}:{args.gateway_port}/"
            problem = wait_http(url, group, 120)
            if problem:
                print(f"launch: gateway {problem}", file=sys.stderr)
                return 1
            print(f"launch: open {url}  (Ctrl-C stops everything)", flush=True)
        else:
            print("launch: Ctrl-C stops the services", flush=True)
        while not stopping:
            if group.exited():
                print(f"launch: a service exited: {group.exited()}; stopping the rest", file=sys.stderr)
                return 1
            time.sleep(0.5)
        return 0
    finally:
        group.stop(grace=35.0)


if __name__ == "__main__":
    raise SystemExit(main())
