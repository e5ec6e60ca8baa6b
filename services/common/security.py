"""Transport security and access: TLS / mutual TLS credentials, and the shared-token check.

The token guards the generation service only; health (for probes) and reflection stay open.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path

import grpc

from .errors import ServiceError
from .handlers import wrap_handler


@dataclass(frozen=True)
class TlsFiles:
    cert: Path | None = None  # server certificate chain (PEM); with key, the port serves TLS
    key: Path | None = None
    client_ca: Path | None = None  # when set, clients must present a certificate this CA signed (mTLS)

    @property
    def enabled(self) -> bool:
        return self.cert is not None


def server_credentials(tls: TlsFiles) -> grpc.ServerCredentials:
    pairs = [(tls.key.read_bytes(), tls.cert.read_bytes())]
    if tls.client_ca is not None:
        return grpc.ssl_server_credentials(pairs, root_certificates=tls.client_ca.read_bytes(),
                                           require_client_auth=True)
    return grpc.ssl_server_credentials(pairs)


def read_token(path: Path | None, value: str | None) -> str | None:
    """The shared token, from a file (a mounted secret) or a value; None = no token required."""
    if path is not None:
        token = path.read_text().strip()
        if not token:
            raise ValueError(f"{path} is empty")
        return token
    return value or None


class Unauthenticated(ServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED


class TokenInterceptor(grpc.ServerInterceptor):
    """Calls to `service_name` need `authorization: Bearer <token>` metadata."""

    def __init__(self, token: str, service_name: str):
        self._expected = f"Bearer {token}".encode()
        self._prefix = f"/{service_name}/"

    def intercept_service(self, continuation, handler_call_details):
        if not handler_call_details.method.startswith(self._prefix):
            return continuation(handler_call_details)
        given = dict(handler_call_details.invocation_metadata or ()).get("authorization", "")
        if hmac.compare_digest(given.encode(), self._expected):
            return continuation(handler_call_details)
        message = "missing or wrong authorization token (send 'authorization: Bearer <token>' metadata)"

        def deny(request, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

        def deny_stream(request, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
            yield  # pragma: no cover - makes this a generator, like the handler it replaces

        return wrap_handler(continuation(handler_call_details), lambda _inner: deny, lambda _inner: deny_stream)
