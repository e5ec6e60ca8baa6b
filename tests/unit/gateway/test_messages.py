"""The gateway's words for a failed call: what to do, an id for internal errors; addresses only in its log."""

import logging
import re

import grpc
import pytest

from gateway_ui.backend import explain
from gateway_ui.config import load_config
from imagegen.v1.contract import Reason
from services.client import errors

ADDRESS = "10.1.2.3:50051"


def made(cls, code, details, reason=None, error_id=None):
    error = cls(code, details, reason, (), "txt2img", ADDRESS)
    error.error_id = error_id
    return error


@pytest.mark.parametrize("error", [
    made(errors.Unreachable, grpc.StatusCode.UNAVAILABLE, f"failed to connect to all addresses; ipv4:{ADDRESS}"),
    made(errors.ShuttingDown, grpc.StatusCode.UNAVAILABLE, "draining", Reason.SHUTTING_DOWN),
])
def test_unavailable_names_the_mode_not_the_address(error):
    message = explain(error, 60)
    assert message.startswith("txt2img service is unavailable") and ADDRESS not in message and "10.1" not in message


def test_an_internal_error_shows_the_services_id_and_logs_the_details(caplog):
    error = made(errors.InternalError, grpc.StatusCode.INTERNAL,
                 "internal error (id 1a2b3c4d); the service log has the details", Reason.INTERNAL, "1a2b3c4d")
    with caplog.at_level(logging.INFO, logger="gateway"):
        message = explain(error, 60)
    assert message == "txt2img failed with an internal error (id 1a2b3c4d); the operator's logs have the details"
    assert "1a2b3c4d" in caplog.text and ADDRESS in caplog.text


@pytest.mark.parametrize("error", [
    made(errors.InternalError, grpc.StatusCode.UNKNOWN, "Exception calling application: KeyError('unet')"),
    made(errors.ServiceError, grpc.StatusCode.DATA_LOSS, "proxy: upstream reset at /srv/app.py line 3"),
])
def test_an_unexpected_status_shows_a_fresh_id_never_its_text(error, caplog):
    with caplog.at_level(logging.INFO, logger="gateway"):
        message = explain(error, 60)
    match = re.fullmatch(r"txt2img failed with an internal error \(id ([0-9a-f]{8})\); "
                         r"the operator's logs have the details", message)
    assert match, message
    assert match.group(1) in caplog.text and error.details() in caplog.text  # the details are logged


def test_concurrency_must_be_at_least_one():
    assert load_config(["--concurrency", "1"], environ={}).concurrency == 1
    assert load_config([], environ={"GATEWAY_CONCURRENCY": "4"}).concurrency == 4
    with pytest.raises(SystemExit):
        load_config(["--concurrency", "0"], environ={})
