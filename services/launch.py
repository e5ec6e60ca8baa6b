"""Run the three mode services, and the gateway, together in the foreground; Ctrl-C stops them all.

`make run` runs all four, `make services` only the services. Each is its own process, as in
production. The launcher waits until every service reports SERVING on the health service (and the
gateway answers HTTP), prints where they are, and on Ctrl-C or SIGTERM stops them gracefully.
Every port it gives its children follows one setting, `--base-port` (`ports`), so a second copy on the
same machine moves all of them at once.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from imagegen.v1.contract import MODES
from services.client import ImageGenClient
from services.core.models.presets import EMBEDDED


DEFAULT_GATEWAY_PORT = 7860
SAMPLE_STYLES = Path(__file__).resolve().parent.parent / "gateway_ui" / "samples" / "styles.csv"
# From --base-port B, one copy's ports are consecutive: the modes' gRPC ports, their metrics ports, the
# gateway's, then the modes' probe ports (B..B+2, B+3..B+5, B+6, B+7..B+9 for txt2img, img2img, inpaint).
PORTS_PER_COPY = 3 * len(MODES) + 1


@dataclass(frozen=True)
class Ports:
    grpc: dict[str, int]  # mode -> its gRPC port
    metrics: dict[str, int]  # mode -> its Prometheus port; -1 = off
    gateway: int
    health: dict[str, int]  # mode -> its probe port (health and GetInfo only); -1 = off


def ports(base: int | None, gateway: int | None = None, metrics: bool = True,
          health: bool = True) -> Ports:
    """Every port of one copy. Without a base, each mode's own defaults (the contract's 50051-50053,
    9051-9053 and 9061-9063) and 7860; with one, PORTS_PER_COPY consecutive ports from it. An explicit
    gateway port wins over either. ValueError when the base leaves no room for them all."""
    if base is not None and not 1 <= base <= 65536 - PORTS_PER_COPY:
        raise ValueError(f"--base-port {base}: the {PORTS_PER_COPY} ports from it must lie within 1..65535")
    modes = list(MODES)
    if base is None:
        grpc = {mode: MODES[mode].port for mode in modes}
        scraped = {mode: MODES[mode].metrics_port for mode in modes}
        probes = {mode: MODES[mode].health_port for mode in modes}
        own_gateway = DEFAULT_GATEWAY_PORT
    else:
        grpc = {mode: base + index for index, mode in enumerate(modes)}
        scraped = {mode: base + len(modes) + index for index, mode in enumerate(modes)}
        own_gateway = base + 2 * len(modes)
        probes = {mode: own_gateway + 1 + index for index, mode in enumerate(modes)}
    off = dict.fromkeys(modes, -1)
    return Ports(grpc, scraped if metrics else off, gateway if gateway is not None else own_gateway,
                 probes if health else off)


def service_command(mode: str, model: str, host: str, port: int, device: str, metrics_port: int,
                    health_port: int = -1, models_dir: Path | None = None, embeddings_dir: str = "",
                    lora_dir: str = "", upscaler_dir: str = "", controlnet_dir: str = "") -> list[str]:
    return [sys.executable, "-m", f"services.{mode}", "--model", model, "--host", host,
            "--port", str(port), "--device", device, "--metrics-port", str(metrics_port),
            "--health-port", str(health_port), *(["--models-dir", str(models_dir)] if models_dir else []),
            *(["--embeddings-dir", embeddings_dir] if embeddings_dir else []),
            *(["--lora-dir", lora_dir] if lora_dir else []),
            *(["--upscaler-dir", upscaler_dir] if upscaler_dir else []),
            *(["--controlnet-dir", controlnet_dir] if controlnet_dir else [])]


def services_cache(environ) -> Path:
    """The services' cache folder, as they read it (IMAGEGEN_CACHE_DIR, else their default)."""
    from services.core.config import default_cache_dir

    return Path(environ["IMAGEGEN_CACHE_DIR"]) if environ.get("IMAGEGEN_CACHE_DIR") else default_cache_dir(environ)


def demo_models(cache_dir: Path, folder: Path | None = None) -> Path:
    """A models folder for the embedded model: the tiny SDXL model, so each mode's service offers two
    checkpoints (its tiny one, the default, and tiny-xl) and every tab's checkpoint dropdown has a choice.
    The folder holds a link to the preset's cached build (made once, seconds; the services build theirs
    the same way)."""
    from services.core.models.presets import ensure_tiny

    folder = folder or cache_dir / "launch-models"
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "tiny-xl"
    target = ensure_tiny(cache_dir, False, "tiny-xl")
    if not link.exists():  # missing, or left dangling by a cleared cache
        link.unlink(missing_ok=True)
        try:
            link.symlink_to(target, target_is_directory=True)
        except FileExistsError:  # a second launcher made it meanwhile
            pass
    return folder


def sample_embeddings(environ) -> str:
    """The embedded tiny models' sample embeddings folder (built into the services' cache if need be)."""
    from services.core.models.presets import ensure_sample_embeddings

    return str(ensure_sample_embeddings(services_cache(environ)))


def sample_loras(environ) -> str:
    """The embedded tiny models' sample LoRAs folder (built into the services' cache if need be)."""
    from services.core.models.presets import ensure_sample_loras

    return str(ensure_sample_loras(services_cache(environ)))


def lora_folder(given: str | None, models: dict[str, str], environ) -> str:
    """The services' --lora-dir: the one given ('' for none); else, when every service runs an embedded
    model, the sample LoRAs (another model would list LoRAs it refuses); else none."""
    if given is not None:
        return given
    return sample_loras(environ) if set(models.values()) <= set(EMBEDDED) else ""


def tiny_upscalers(environ) -> str:
    """The embedded tiny ESRGAN's folder (built into the services' cache if need be)."""
    from services.core.models.presets import ensure_tiny_upscalers

    return str(ensure_tiny_upscalers(services_cache(environ)))


def sample_controlnets(environ) -> str:
    """The embedded tiny models' sample ControlNets folder (built into the services' cache if need be)."""
    from services.core.models.presets import ensure_sample_controlnets

    return str(ensure_sample_controlnets(services_cache(environ)))


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
    parser.add_argument("--models-dir", type=Path, default=os.environ.get("IMAGEGEN_MODELS_DIR") or None,
                        help="a folder of checkpoints every service offers beside its model; by default, "
                             "with the embedded model, one holding the tiny SDXL model [IMAGEGEN_MODELS_DIR]")
    parser.add_argument("--demo-models", action=argparse.BooleanOptionalAction, default=True,
                        help="with the embedded model and no --models-dir, offer tiny-xl too (default: yes)")
    parser.add_argument("--host", default="127.0.0.1")
    # Environment defaults are strings: argparse converts them with `type`, reporting a bad one as usage.
    parser.add_argument("--base-port", type=int, default=os.environ.get("IMAGEGEN_BASE_PORT"),
                        help=f"move every port: the {PORTS_PER_COPY} consecutive ports from this one serve "
                             "txt2img, img2img, inpaint, their metrics in the same order, the gateway, "
                             "then their probe ports (default: 50051-50053, 9051-9053, 7860, 9061-9063) "
                             "[IMAGEGEN_BASE_PORT]")
    parser.add_argument("--device", default=os.environ.get("IMAGEGEN_DEVICE", "auto"),
                        help="device for all three; set per service with cuda:N in production")
    parser.add_argument("--gateway", action=argparse.BooleanOptionalAction, default=True,
                        help="also run the Gradio gateway (default: yes)")
    parser.add_argument("--gateway-port", type=int, default=os.environ.get("GATEWAY_PORT"),
                        help="the gateway's port, wherever --base-port puts the rest [GATEWAY_PORT]")
    parser.add_argument("--metrics", action=argparse.BooleanOptionalAction,
                        default=os.environ.get("IMAGEGEN_METRICS_PORT") != "-1",
                        help="serve each service's Prometheus /metrics (default: yes; "
                             "IMAGEGEN_METRICS_PORT=-1: no)")
    parser.add_argument("--health-ports", action=argparse.BooleanOptionalAction,
                        default=os.environ.get("IMAGEGEN_HEALTH_PORT") != "-1",
                        help="also serve each service's health and GetInfo on a probe port of its own "
                             "(default: yes; IMAGEGEN_HEALTH_PORT=-1: no)")
    parser.add_argument("--embeddings-dir", default=os.environ.get("IMAGEGEN_EMBEDDINGS_DIR"),
                        help="textual-inversion embeddings for all three (default: the tiny models' samples, "
                             "which other models skip; '' for none) [IMAGEGEN_EMBEDDINGS_DIR]")
    parser.add_argument("--lora-dir", default=os.environ.get("IMAGEGEN_LORA_DIR"),
                        help="LoRAs for all three (default, on the embedded models: their sample LoRAs; '' for "
                             "none) [IMAGEGEN_LORA_DIR]")

    parser.add_argument("--upscaler-dir", default=os.environ.get("IMAGEGEN_UPSCALER_DIR"),
                        help="upscaler models for the img2img service's Upscale (default: the embedded tiny "
                             "ESRGAN; '' for none) [IMAGEGEN_UPSCALER_DIR]")
    parser.add_argument("--controlnet-dir", default=os.environ.get("IMAGEGEN_CONTROLNET_DIR"),
                        help="ControlNets for all three (default, on the embedded models: their samples, "
                             "'tiny-controlnet' and 'tiny-xl-controlnet'; '' for none) [IMAGEGEN_CONTROLNET_DIR]")
    parser.add_argument("--start-timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    if os.environ.get("IMAGEGEN_METRICS_PORT") not in (None, "", "-1"):
        parser.error("IMAGEGEN_METRICS_PORT would give the three services one port; move them with "
                     "--base-port (IMAGEGEN_BASE_PORT), or turn them off with --no-metrics")
    if os.environ.get("IMAGEGEN_HEALTH_PORT") not in (None, "", "-1"):
        parser.error("IMAGEGEN_HEALTH_PORT would give the three services one port; move them with "
                     "--base-port (IMAGEGEN_BASE_PORT), or turn them off with --no-health-ports")
    try:
        layout = ports(args.base_port, args.gateway_port, args.metrics, args.health_ports)
    except ValueError as exc:
        parser.error(str(exc))

    models = {mode: getattr(args, f"{mode}_model") or args.model for mode in MODES}
    models_dir = args.models_dir
    if models_dir is None and args.demo_models and set(models.values()) == {"tiny"}:
        models_dir = demo_models(services_cache(os.environ))
        print(f"launch: the services offer tiny-xl too ({models_dir}; --no-demo-models: not)", flush=True)
    embeddings_dir = sample_embeddings(os.environ) if args.embeddings_dir is None else args.embeddings_dir
    lora_dir = lora_folder(args.lora_dir, models, os.environ)

    upscaler_dir = tiny_upscalers(os.environ) if args.upscaler_dir is None else args.upscaler_dir
    controlnet_dir = args.controlnet_dir
    if controlnet_dir is None:  # the samples fit the embedded models only (a real SD 1.5 would take them)
        controlnet_dir = sample_controlnets(os.environ) if set(models.values()) <= set(EMBEDDED) else ""

    group = ProcessGroup()
    stopping = []
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    targets = {}
    for mode in MODES:
        device = getattr(args, f"{mode}_device") or args.device
        port = layout.grpc[mode]
        group.start(mode, service_command(mode, models[mode], args.host, port, device, layout.metrics[mode],
                                          layout.health[mode], models_dir, embeddings_dir, lora_dir,
                                          upscaler_dir if MODES[mode].uses_upscalers else "", controlnet_dir))
        targets[mode] = f"{args.host}:{port}"
    try:
        problem = wait_serving(targets, group, args.start_timeout) if not stopping else "stopped"
        if problem:
            print(f"launch: services {problem}", file=sys.stderr)
            return 1
        print("launch: all SERVING - " + ", ".join(f"{m} {a}" for m, a in targets.items())
              + (" - metrics on " + ", ".join(map(str, layout.metrics.values())) if args.metrics else ""),
              flush=True)
        if args.gateway:
            command = [sys.executable, "-m", "gateway_ui", "--host", args.host, "--port", str(layout.gateway)]
            if not os.environ.get("GATEWAY_STYLES"):  # the sample styles, so the picker shows some
                command += ["--styles", str(SAMPLE_STYLES)]
            for mode, address in targets.items():
                command += [f"--{mode}-addr", address]
            group.start("gateway", command)
            url = f"http://{args.host}:{layout.gateway}/"
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
