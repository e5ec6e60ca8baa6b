"""How a client reaches secured services: TLS, mutual TLS, a shared token."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import grpc


@dataclass(frozen=True)
class ClientSecurity:
    ca: Path | None = None  # CA (PEM) that signed the services' certificates; set = TLS
    cert: Path | None = None  # this client's certificate chain (PEM), for mutual TLS
    key: Path | None = None
    token: str | None = None  # sent as `authorization: Bearer <token>`
    server_name: str | None = None  # the name to check in the service's certificate, if not the address's

    @classmethod
    def from_env(cls, environ=None) -> "ClientSecurity":
        """IMAGEGEN_TLS_CA, IMAGEGEN_TLS_CLIENT_CERT, IMAGEGEN_TLS_CLIENT_KEY, IMAGEGEN_AUTH_TOKEN
        (or IMAGEGEN_AUTH_TOKEN_FILE), IMAGEGEN_TLS_SERVER_NAME."""
        environ = os.environ if environ is None else environ

        def path(name):
            return Path(environ[name]) if environ.get(name) else None

        token = environ.get("IMAGEGEN_AUTH_TOKEN") or None
        if environ.get("IMAGEGEN_AUTH_TOKEN_FILE"):
            token = Path(environ["IMAGEGEN_AUTH_TOKEN_FILE"]).read_text().strip()
        return cls(path("IMAGEGEN_TLS_CA"), path("IMAGEGEN_TLS_CLIENT_CERT"), path("IMAGEGEN_TLS_CLIENT_KEY"),
                   token, environ.get("IMAGEGEN_TLS_SERVER_NAME") or None)

    def credentials(self) -> grpc.ChannelCredentials | None:
        if self.ca is None:
            return None
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.read_bytes(),
            private_key=self.key.read_bytes() if self.key else None,
            certificate_chain=self.cert.read_bytes() if self.cert else None,
        )

    def channel(self, address: str, options: list | None = None) -> grpc.Channel:
        """A channel to `address`: TLS when a CA is set, plaintext otherwise."""
        options = list(options or [])
        if self.server_name:
            options.append(("grpc.ssl_target_name_override", self.server_name))
        credentials = self.credentials()
        if credentials is not None:
            return grpc.secure_channel(address, credentials, options=options)
        return grpc.insecure_channel(address, options=options)

    @property
    def metadata(self) -> tuple:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()
