"""Gateway settings: flags, each with an environment equivalent, read once at start."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

from imagegen.v1.contract import MODES
from imagegen.v1.flags import Flag, FlagParser
from services.client import ClientSecurity


@dataclass(frozen=True)
class GatewayConfig:
    addresses: dict  # mode -> "host:port"
    host: str = "127.0.0.1"
    port: int = 7860
    timeout_s: float = 600.0  # deadline of every generation call
    answer_s: float = 15.0  # a service queues a request at once: silence this long means it is not responding
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
    api: bool = True  # the AUTOMATIC1111-compatible HTTP API at /sdapi/v1 (gateway_ui/a1111)
    # HTTP Basic credentials of the API, (user, password) pairs; None: the UI's login when it has one,
    # else an open API.
    api_auth: tuple[tuple[str, str], ...] | None = None
    api_max_body_mb: float = 32.0  # largest API request body (base64 images are 4/3 of their bytes)
    styles: str | None = None  # AUTOMATIC1111's styles.csv: the prompt styles offered (gateway_ui/styles.py)

    @property
    def api_credentials(self) -> tuple[tuple[str, str], ...]:
        """Who may call the API: --api-auth, else the UI's login (a locked UI never leaves an open API),
        else nobody needs to (empty)."""
        if self.api_auth:
            return self.api_auth
        return ((self.username, self.password),) if self.username else ()


def _not_off(text: str) -> bool:
    """GATEWAY_SAVE: anything but 0/false/no/off keeps saving."""
    return text.strip().lower() not in ("0", "false", "no", "off")


def parse_api_auth(text: str) -> tuple[tuple[str, str], ...] | None:
    """"user:pass[,user:pass]" -> ((user, pass), ...); "" -> None (unset, as compose passes it); a pair
    without both parts is refused."""
    if not text.strip():
        return None
    pairs = []
    for item in text.split(","):
        user, sep, password = item.strip().partition(":")
        if not (sep and user and password):
            raise argparse.ArgumentTypeError("expected user:password[,user:password]")
        pairs.append((user, password))
    return tuple(pairs)


def gateway_flags() -> tuple[Flag, ...]:
    """Each dest is the GatewayConfig field it sets (the addresses: <mode>_addr for each mode)."""
    addresses = tuple(Flag(f"--{mode}-addr", f"IMAGEGEN_{mode.upper()}_ADDR", str, contract.default_address,
                           f"HOST:PORT of the {mode} service") for mode, contract in MODES.items())
    return addresses + (
        Flag("--host", "GATEWAY_HOST", str, GatewayConfig.host,
             "address to serve on; 0.0.0.0 to accept other machines"),
        Flag("--port", "GATEWAY_PORT", int, GatewayConfig.port),
        Flag("--timeout", "GATEWAY_TIMEOUT_S", float, GatewayConfig.timeout_s,
             "deadline in seconds for each generation", dest="timeout_s"),
        Flag("--answer-timeout", "GATEWAY_ANSWER_TIMEOUT_S", float, GatewayConfig.answer_s,
             "seconds to wait for a service's first answer to a generation (it queues a request at once) "
             "before telling the browser it is not responding", dest="answer_s", min=0.1,
             bounds="at least 0.1 (seconds)"),
        Flag("--max-upload-mb", "GATEWAY_MAX_UPLOAD_MB", float, GatewayConfig.max_upload_mb,
             "largest uploaded file"),
        Flag("--concurrency", "GATEWAY_CONCURRENCY", int, GatewayConfig.concurrency,
             "generations forwarded at once per tab; the services queue the rest", min=1,
             bounds="at least 1 (generations forwarded at once per tab)"),
        Flag("--retries", "GATEWAY_RETRIES", int, GatewayConfig.retries,
             "retries when a service's queue is full, before showing 'busy'"),
        Flag("--outputs-dir", "GATEWAY_OUTPUTS_DIR", str, GatewayConfig.outputs_dir,
             "where every final image is kept, as <mode>/<YYYY-MM-DD>/<NNNNN>-<seed>.png"),
        Flag("--no-save", "GATEWAY_SAVE", _not_off, GatewayConfig.save, "keep nothing on disk", dest="save",
             action="store_false"),
        Flag("--preview-every", "GATEWAY_PREVIEW_EVERY", int, GatewayConfig.preview_every,
             "show a live preview every this many steps; 0 = none", min=0, bounds="0 (no previews) or more"),
        Flag("--preview-ms", "GATEWAY_PREVIEW_MS", int, GatewayConfig.preview_ms,
             "send the page at most one preview this often, in ms: each one costs the gateway, the page and "
             "API clients a round of work", min=0, bounds="0 (every preview) or more"),
        Flag("--no-api", "GATEWAY_API", _not_off, GatewayConfig.api,
             "serve no AUTOMATIC1111-compatible HTTP API (/sdapi/v1)", dest="api", action="store_false"),
        Flag("--api-auth", "GATEWAY_API_AUTH", parse_api_auth, None,
             "HTTP Basic credentials of the API, user:password[,user:password]; default: the UI's login "
             "(GATEWAY_USERNAME/GATEWAY_PASSWORD) when it has one, else an open API"),
        Flag("--api-max-body-mb", "GATEWAY_API_MAX_BODY_MB", float, GatewayConfig.api_max_body_mb,
             "largest API request body in MB (images travel in it as base64, 4/3 of their size)", min=0.1,
             bounds="at least 0.1 (MB)"),
        Flag("--styles", "GATEWAY_STYLES", str, None,
             "AUTOMATIC1111's styles.csv (name, prompt, negative_prompt; {prompt} marks where the prompt "
             "goes): the prompt styles the tabs and the API offer; reread when it changes"),
    )


def load_config(argv=None, environ=None) -> GatewayConfig:
    environ = os.environ if environ is None else environ
    parser = FlagParser(
        prog="python -m gateway_ui",
        description="The Gradio web gateway: one tab per mode, each routed to its gRPC service.",
        epilog="Login: set GATEWAY_USERNAME and GATEWAY_PASSWORD in the environment (both, or neither). "
        "Secured services: IMAGEGEN_TLS_CA, IMAGEGEN_TLS_CLIENT_CERT + IMAGEGEN_TLS_CLIENT_KEY, "
        "IMAGEGEN_AUTH_TOKEN.",
    )
    parser.add_flags(gateway_flags())
    values = vars(parser.read(argv, environ))
    username, password = environ.get("GATEWAY_USERNAME"), environ.get("GATEWAY_PASSWORD")
    if bool(username) != bool(password):
        parser.error("set both GATEWAY_USERNAME and GATEWAY_PASSWORD, or neither")
    return GatewayConfig(
        addresses={mode: values.pop(f"{mode}_addr") for mode in MODES},
        **values,  # the rest of gateway_flags' settings, by their GatewayConfig names
        username=username or None,
        password=password or None,
        security=ClientSecurity.from_env(environ),
    )
