"""Gateway settings: flags, each with an environment equivalent, read once at start."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

from imagegen.v1.contract import MODES
from services.client import ClientSecurity


@dataclass(frozen=True)
class GatewayConfig:
    addresses: dict  # mode -> "host:port"
    host: str = "127.0.0.1"
    port: int = 7860
    timeout_s: float = 600.0  # deadline of every generation call
    username: str | None = None
    password: str | None = None
    max_upload_mb: float = 20.0
    concurrency: int = 16  # generations the gateway forwards at once per tab
    retries: int = 3  # retries of a full queue, with backoff, before showing "busy"
    security: ClientSecurity | None = None  # TLS / mutual TLS / token towards the services
    outputs_dir: str = "outputs"  # every final image is kept under <outputs_dir>/<mode>/<YYYY-MM-DD>/
    save: bool = True  # False: nothing is kept on disk (and History is empty)
    preview_every: int = 2  # steps between live previews in the result area; 0 = none
    preview_ms: int = 1000  # and at most one preview sent to the page this often (A1111's refresh period)


def load_config(argv=None, environ=None) -> GatewayConfig:
    environ = os.environ if environ is None else environ
    p = argparse.ArgumentParser(
        prog="python -m gateway_ui",
        description="The Gradio web gateway: one tab per mode, each routed to its gRPC service.",
        epilog="Login: set GATEWAY_USERNAME and GATEWAY_PASSWORD in the environment (both, or neither). "
        "Secured services: IMAGEGEN_TLS_CA, IMAGEGEN_TLS_CLIENT_CERT + IMAGEGEN_TLS_CLIENT_KEY, IMAGEGEN_AUTH_TOKEN.",
    )
    for mode, contract in MODES.items():
        p.add_argument(f"--{mode}-addr", default=environ.get(f"IMAGEGEN_{mode.upper()}_ADDR", contract.default_address),
                       help=f"HOST:PORT of the {mode} service [IMAGEGEN_{mode.upper()}_ADDR]")
    p.add_argument("--host", default=environ.get("GATEWAY_HOST", "127.0.0.1"),
                   help="address to serve on; 0.0.0.0 to accept other machines [GATEWAY_HOST]")
    p.add_argument("--port", type=int, default=int(environ.get("GATEWAY_PORT", 7860)), help="[GATEWAY_PORT]")
    p.add_argument("--timeout", type=float, default=float(environ.get("GATEWAY_TIMEOUT_S", 600)),
                   help="deadline in seconds for each generation [GATEWAY_TIMEOUT_S]")
    p.add_argument("--max-upload-mb", type=float, default=float(environ.get("GATEWAY_MAX_UPLOAD_MB", 20)),
                   help="largest uploaded file [GATEWAY_MAX_UPLOAD_MB]")
    p.add_argument("--concurrency", type=int, default=int(environ.get("GATEWAY_CONCURRENCY", 16)),
                   help="generations forwarded at once per tab; the services queue the rest [GATEWAY_CONCURRENCY]")
    p.add_argument("--retries", type=int, default=int(environ.get("GATEWAY_RETRIES", 3)),
                   help="retries when a service's queue is full, before showing 'busy' [GATEWAY_RETRIES]")
    p.add_argument("--outputs-dir", default=environ.get("GATEWAY_OUTPUTS_DIR", "outputs"),
                   help="where every final image is kept, as <mode>/<YYYY-MM-DD>/<NNNNN>-<seed>.png "
                        "[GATEWAY_OUTPUTS_DIR]")
    p.add_argument("--no-save", dest="save", action="store_false",
                   default=environ.get("GATEWAY_SAVE", "1").strip().lower() not in ("0", "false", "no", "off"),
                   help="keep nothing on disk [GATEWAY_SAVE=0]")
    p.add_argument("--preview-every", type=int, default=int(environ.get("GATEWAY_PREVIEW_EVERY", 2)),
                   help="show a live preview every this many steps; 0 = none [GATEWAY_PREVIEW_EVERY]")
    p.add_argument("--preview-ms", type=int, default=int(environ.get("GATEWAY_PREVIEW_MS", 1000)),
                   help="send the page at most one preview this often, in ms: each one costs the gateway, "
                        "the page and API clients a round of work [GATEWAY_PREVIEW_MS]")
    args = p.parse_args(argv)
    username, password = environ.get("GATEWAY_USERNAME"), environ.get("GATEWAY_PASSWORD")
    if args.concurrency < 1:
        p.error("--concurrency must be at least 1 (generations forwarded at once per tab)")
    if args.preview_every < 0:
        p.error("--preview-every must be 0 (no previews) or more")
    if args.preview_ms < 0:
        p.error("--preview-ms must be 0 (every preview) or more")
    if bool(username) != bool(password):
        p.error("set both GATEWAY_USERNAME and GATEWAY_PASSWORD, or neither")
    return GatewayConfig(
        addresses={mode: getattr(args, f"{mode}_addr") for mode in MODES},
        host=args.host,
        port=args.port,
        timeout_s=args.timeout,
        username=username or None,
        password=password or None,
        max_upload_mb=args.max_upload_mb,
        concurrency=args.concurrency,
        retries=args.retries,
        security=ClientSecurity.from_env(environ),
        outputs_dir=args.outputs_dir,
        save=args.save,
        preview_every=args.preview_every,
        preview_ms=args.preview_ms,
    )
