"""Interrupt is a normal end (a note, no warning, no error); the gateway leaves no temporary folder behind."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import httpx

from tests.conftest import RunningGateway, free_port, wait_for
from tests.gateway.page_events import join, padded, trigger

ROOT = Path(__file__).resolve().parents[2]


def test_interrupt_is_an_info_note_not_an_error_or_a_warning(services, caplog):
    service = services["txt2img"]
    gw = RunningGateway({mode: s.address for mode, s in services.items()}, preview_every=1, preview_ms=0)
    session, outcome = uuid.uuid4().hex, []
    long_run = ["a slow fox", "", 150, 7.5, 256, 256, 1, 1, "model default", 1, None, []]  # model, styles: defaults
    try:
        with caplog.at_level(logging.INFO, logger="gateway"):
            running = threading.Thread(target=lambda: outcome.append(
                trigger(gw.url, gw.demo, "txt2img-generate", "click",
                        padded(gw.demo, "txt2img-generate", "click", long_run), session)))
            running.start()
            assert wait_for(lambda: service.engine.current, timeout=60), "the generation never started"
            steps_before = service.steps_run
            join(gw.url, gw.demo, "txt2img-interrupt", "click", [], session)
            running.join(60)
        assert outcome, "the generation did not end"
        result = outcome[0]
        assert result.success, result.error
        assert result.logs == [("info", "txt2img: interrupted.")]
        assert service.steps_run - steps_before < 150
        gateway_records = [r for r in caplog.records if r.name == "gateway"]
        assert not [r for r in gateway_records if r.levelno >= logging.WARNING], gateway_records
        assert any(r.getMessage() == "txt2img: interrupted" for r in gateway_records)
    finally:
        gw.close()


def test_the_gateway_removes_its_temporary_folders_on_sigterm(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    port = free_port()
    env = {**os.environ, "TMPDIR": str(scratch), "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen([sys.executable, "-m", "gateway_ui", "--port", str(port), "--no-save",
                             "--txt2img-addr", "127.0.0.1:1", "--img2img-addr", "127.0.0.1:1",
                             "--inpaint-addr", "127.0.0.1:1"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def up():
            try:
                return httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_for(up, timeout=120), "the gateway did not start"
        assert list(scratch.glob("imagegen-gateway-*")), os.listdir(scratch)  # its results folder
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        assert not list(scratch.glob("imagegen-gateway-*")), os.listdir(scratch)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_closing_a_gateway_in_process_removes_its_results_folder(services):
    gw = RunningGateway({mode: s.address for mode, s in services.items()})
    folder = gw.gateway.out_dir
    gw.client().predict("a red fox", "", 2, 7.5, 64, 64, 7, 1, "model default", api_name="/txt2img")
    assert any(folder.rglob("*.png"))
    gw.close()
    assert not folder.exists()
