"""Transport security: TLS / mutual TLS server credentials, binding a port with them, and reading the
shared token.

The token itself is checked by interceptors.TokenInterceptor. Light on imports: the probe process
(probe_child.py) binds its port with the same code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc


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


class BindError(Exception):
    pass


def bind_port(server: grpc.Server, address: str, tls: TlsFiles) -> int:
    """Listen on `address` (TLS when `tls` is enabled); the port bound, or BindError saying why not."""
    try:
        if tls.enabled:
            port = server.add_secure_port(address, server_credentials(tls))
        else:
            port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise BindError(f"could not listen on {address}: {exc}") from None
    if port == 0:
        raise BindError(f"could not listen on {address} (in use, or not an address of this machine)")
    return port


def read_token(path: Path | None, value: str | None) -> str | None:
    """The shared token, from a file (a mounted secret) or a value; None = no token required."""
    if path is not None:
        token = path.read_text().strip()
        if not token:
            raise ValueError(f"{path} is empty")
        return token
    return value or None
