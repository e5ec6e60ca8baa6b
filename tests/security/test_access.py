"""TLS, mutual TLS and the shared token on real channels (with a CA the test makes), and what requests can't do."""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from imagegen.v1 import imagegen_pb2 as pb
from services.client import ClientSecurity, ImageGenClient, InvalidInput
from tests.conftest import CACHE_DIR, RunningGateway, RunningService, request_for


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _cert(subject: str, key, issuer_cert=None, issuer_key=None, *, ca=False, server=False):
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer_cert.subject if issuer_cert else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


def _write(folder: Path, name: str, cert, key) -> tuple[Path, Path]:
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    ca_key, rogue_key = _key(), _key()
    ca = _cert("imagegen test CA", ca_key, ca=True)
    rogue = _cert("someone else's CA", rogue_key, ca=True)
    files = {"ca": _write(folder, "ca", ca, ca_key)[0], "rogue_ca": _write(folder, "rogue", rogue, rogue_key)[0]}
    server_key, client_key, stranger_key = _key(), _key(), _key()
    files["server"] = _write(folder, "server", _cert("localhost", server_key, ca, ca_key, server=True), server_key)
    files["client"] = _write(folder, "client", _cert("gateway", client_key, ca, ca_key), client_key)
    files["stranger"] = _write(folder, "stranger", _cert("stranger", stranger_key, rogue, rogue_key), stranger_key)
    return files


def calls_ok(address: str, security: ClientSecurity | None) -> bool:
    with ImageGenClient("txt2img", address, security=security, retries=0, timeout=10) as client:
        try:
            return len(client.generate(request_for("txt2img", steps=2)).images) == 1
        except grpc.RpcError as err:
            assert err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED), err
            return False


def test_tls(pki):
    cert, key = pki["server"]
    service = RunningService("txt2img", "--tls-cert", str(cert), "--tls-key", str(key), "--warmup", "false")
    try:
        assert calls_ok(service.address, ClientSecurity(ca=pki["ca"]))
        assert not calls_ok(service.address, None)  # plaintext is refused
        assert not calls_ok(service.address, ClientSecurity(ca=pki["rogue_ca"]))  # an untrusted server
    finally:
        service.stop()


def test_mutual_tls(pki):
    cert, key = pki["server"]
    service = RunningService("txt2img", "--tls-cert", str(cert), "--tls-key", str(key),
                             "--tls-client-ca", str(pki["ca"]), "--warmup", "false")
    try:
        client_cert, client_key = pki["client"]
        stranger_cert, stranger_key = pki["stranger"]
        assert calls_ok(service.address, ClientSecurity(ca=pki["ca"], cert=client_cert, key=client_key))
        assert not calls_ok(service.address, ClientSecurity(ca=pki["ca"]))  # no client certificate
        assert not calls_ok(service.address, ClientSecurity(ca=pki["ca"], cert=stranger_cert, key=stranger_key))
    finally:
        service.stop()


@pytest.fixture(scope="module")
def token_service(tmp_path_factory):
    token_file = tmp_path_factory.mktemp("secret") / "token"
    token_file.write_text("s3cret-token\n")
    service = RunningService("txt2img", "--auth-token-file", str(token_file), "--warmup", "false")
    yield service
    service.stop()


def test_the_probe_port_serves_mutual_tls_as_the_service_port_does(pki, tmp_path):
    cert, key = pki["server"]
    client_cert, client_key = pki["client"]
    token_file = tmp_path / "token"
    token_file.write_text("probe-token")
    service = RunningService("txt2img", "--tls-cert", str(cert), "--tls-key", str(key), "--tls-client-ca",
                             str(pki["ca"]), "--auth-token-file", str(token_file), "--health-port", "0",
                             "--warmup", "false")
    probe = f"127.0.0.1:{service.server.probe_port}"
    trusted = ClientSecurity(ca=pki["ca"], cert=client_cert, key=client_key)
    try:
        with ImageGenClient("txt2img", probe, retries=0) as plain:
            assert plain.health(timeout=2) == "UNREACHABLE"  # plaintext is refused there too
        with ImageGenClient("txt2img", probe, security=ClientSecurity(ca=pki["ca"]), retries=0) as anonymous:
            assert anonymous.health(timeout=2) == "UNREACHABLE"  # no client certificate
        with ImageGenClient("txt2img", probe, security=trusted, retries=0) as client:
            assert client.wait_until_serving(10)  # health stays open to a trusted client without the token
            with pytest.raises(grpc.RpcError) as denied:
                client.info()
            assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with ImageGenClient("txt2img", probe, security=dataclasses.replace(trusted, token="probe-token")) as client:
            assert client.info().mode == "txt2img"
    finally:
        service.stop()


def test_token_is_required_for_generation(token_service):
    for token in (None, "wrong"):
        with ImageGenClient("txt2img", token_service.address, security=ClientSecurity(token=token)) as client:
            for call in (lambda: client.generate(request_for("txt2img")),
                         lambda: list(client.stream(request_for("txt2img"))), client.info):
                with pytest.raises(grpc.RpcError) as err:
                    call()
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert "authorization" in err.value.details()
    assert token_service.steps_run == 0
    with ImageGenClient("txt2img", token_service.address, security=ClientSecurity(token="s3cret-token")) as client:
        assert len(client.generate(request_for("txt2img", steps=2)).images) == 1
        assert len(list(client.stream(request_for("txt2img", steps=2)))) > 2
    assert token_service.metric("imagegen_requests_total", method="Generate", code="UNAUTHENTICATED") >= 2


def test_health_and_reflection_stay_open_for_probes(token_service):
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    with grpc.insecure_channel(token_service.address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="imagegen.v1.Txt2Img"), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        assert "imagegen.v1.Txt2Img" in ProtoReflectionDescriptorDatabase(channel).get_services()


def test_gateway_reaches_tls_and_token_services(pki, services, tmp_path):
    cert, key = pki["server"]
    token_file = tmp_path / "token"
    token_file.write_text("gw-token")
    secured = RunningService("txt2img", "--tls-cert", str(cert), "--tls-key", str(key),
                             "--tls-client-ca", str(pki["ca"]), "--auth-token-file", str(token_file),
                             "--warmup", "false")
    addresses = {mode: s.address for mode, s in services.items()}
    addresses["txt2img"] = secured.address
    client_cert, client_key = pki["client"]
    from gateway_ui.config import load_config

    config = load_config([], environ={"IMAGEGEN_TLS_CA": str(pki["ca"]), "IMAGEGEN_TLS_CLIENT_CERT": str(client_cert),
                                      "IMAGEGEN_TLS_CLIENT_KEY": str(client_key), "IMAGEGEN_AUTH_TOKEN": "gw-token"})
    gw = RunningGateway(addresses, security=config.security)
    try:
        _gallery, seeds, _info = gw.client().predict("fox", "", 2, 7.5, 64, 64, 4, 1, "model default",
                                                      api_name="/txt2img")
        assert seeds == "4"
        assert "serving" in gw.gateway.status_line("txt2img")
    finally:
        gw.close()
        secured.stop()


def test_requests_cannot_choose_a_path_and_name_models_only_by_name(services):
    # No request field names a file or a path; the one that names a model (params.model) takes a name the
    # service lists, never a path: the service loads only what its operator configured.
    for message in (pb.Txt2ImgRequest, pb.Img2ImgRequest, pb.InpaintRequest, pb.GenerationParams, pb.Image):
        names = {field.name for field in message.DESCRIPTOR.fields}
        assert not {n for n in names if any(w in n for w in ("path", "file", "dir", "url"))}, names
        assert {n for n in names if "model" in n} <= {"model"}, names
    service = services["txt2img"]
    for path in ("../tiny", "/etc/passwd", str(CACHE_DIR), "tiny/../tiny"):
        with pytest.raises(InvalidInput) as refused:
            service.client.generate(request_for("txt2img", model=path))
        assert [v.field for v in refused.value.violations] == ["params.model"]
