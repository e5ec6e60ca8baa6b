"""--health-port: health and GetInfo on a port of their own, the same answers as the service's port,
and nothing else there (uploads go to --port only)."""

from __future__ import annotations

import grpc
import pytest

from imagegen.v1.contract import IMG2IMG
from services.client import ClientSecurity, ImageGenClient
from services.core.rpc.server import BindError, create_server
from tests.conftest import SERVER_MODES, RunningService, request_for, service_config, wait_for


@pytest.fixture(scope="module")
def probed():
    service = RunningService("img2img", "--health-port", "0", "--warmup", "false", load=False)
    yield service
    service.stop()


def test_health_follows_the_service_on_both_ports(probed):
    # The probe port's process hears of each change over a pipe: the same answers, moments later.
    probe = f"127.0.0.1:{probed.server.probe_port}"
    with ImageGenClient("img2img", probe) as client:
        assert client.health() == probed.client.health() == "NOT_SERVING"  # loading
        probed.runtime.load()
        assert probed.client.health() == "SERVING"
        assert wait_for(lambda: client.health() == "SERVING", timeout=5)
        assert wait_for(lambda: client.info() == probed.client.info(), timeout=5), client.info()
        assert client.info().device  # the loaded model's ("" while loading)


def test_the_probe_port_takes_no_generation(probed):
    channel = grpc.insecure_channel(f"127.0.0.1:{probed.server.probe_port}")
    with channel:
        generate = channel.unary_unary(f"/{IMG2IMG.full_service_name}/Generate",
                                       request_serializer=IMG2IMG.request.SerializeToString)
        with pytest.raises(grpc.RpcError) as refused:
            generate(request_for("img2img"), timeout=10)
    assert refused.value.code() in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.RESOURCE_EXHAUSTED)


def test_get_info_there_needs_the_token_as_on_the_service_port(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret")
    service = RunningService("txt2img", "--health-port", "0", "--auth-token-file", str(token_file),
                             "--warmup", "false")
    probe = f"127.0.0.1:{service.server.probe_port}"
    try:
        with ImageGenClient("txt2img", probe, retries=0) as client:
            # Probes stay open; the probe process hears of SERVING over its pipe, moments after the load.
            assert wait_for(lambda: client.health() == "SERVING", timeout=5)
            with pytest.raises(grpc.RpcError) as denied:
                client.info()
            assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with ImageGenClient("txt2img", probe, security=ClientSecurity(token="s3cret")) as client:
            assert client.info().mode == "txt2img"
    finally:
        service.stop()


def test_a_health_port_in_use_is_a_bind_error_naming_it():
    service = RunningService("txt2img", "--health-port", "0", "--warmup", "false", load=False)
    try:
        config = service_config("txt2img", "--health-port", str(service.server.probe_port))
        with pytest.raises(BindError, match="health port"):
            create_server(SERVER_MODES["txt2img"], config)
    finally:
        service.stop()
