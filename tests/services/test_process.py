"""Services as real processes: start from the command line or environment, the client CLI, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from PIL import Image

from imagegen.v1.infotext import split_infotext
from services.client import ImageGenClient, Progress, Queued, Result
from services.client.infotext import read_infotext
from tests.conftest import CACHE_DIR, box_mask, free_port, png, request_for

ROOT = Path(__file__).resolve().parents[2]


def env(**extra) -> dict:
    # No metrics nor probe port unless a test asks: fixed default ports would collide between processes.
    return {**os.environ, "IMAGEGEN_CACHE_DIR": str(CACHE_DIR), "HF_HUB_OFFLINE": "1", "IMAGEGEN_METRICS_PORT": "-1",
            "IMAGEGEN_HEALTH_PORT": "-1", **extra}


def start(mode: str, *args: str, environ=None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", f"services.{mode}", *args],
        cwd=ROOT, env=environ or env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=10)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.client", *args], cwd=cwd, env={
        **env(), "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)


def test_service_from_flags_and_the_client_cli(tmp_path):
    port, metrics_port = free_port(), free_port()
    proc = start("txt2img", "--model", "tiny", "--port", str(port), "--device", "cpu", "--default-size", "64",
                 "--metrics-port", str(metrics_port))
    try:
        with ImageGenClient("txt2img", f"127.0.0.1:{port}") as client:
            assert client.wait_until_serving(120), proc.stderr.read() if proc.poll() is not None else ""
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        assert 'imagegen_queue_depth{mode="txt2img"} 0.0' in metrics
        addr = f"127.0.0.1:{port}"
        done = cli("txt2img", "--addr", addr, "--prompt", "a red fox", "--seed", "7", "--steps", "4",
                   "--out", "fox.png", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "seed 7" in done.stdout
        assert Image.open(tmp_path / "fox.png").size == (64, 64)
        assert "Seed: 7" in read_infotext((tmp_path / "fox.png").read_bytes())
        again = cli("txt2img", "--addr", addr, "--prompt", "a red fox", "--seed", "7", "--steps", "4",
                    "--out", "again.png", cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert (tmp_path / "again.png").read_bytes() == (tmp_path / "fox.png").read_bytes()
        two = cli("txt2img", "--addr", addr, "--steps", "2", "--out", "two.png", "--num-images", "2", cwd=tmp_path)
        assert two.returncode == 0, two.stderr
        assert (tmp_path / "two-0.png").exists() and (tmp_path / "two-1.png").exists()
        bad = cli("txt2img", "--addr", addr, "--width", "65", "--out", "x.png", cwd=tmp_path)
        assert bad.returncode == 1 and "INVALID_ARGUMENT: params.width" in bad.stderr
        info = cli("info", "txt2img", "--addr", addr, cwd=tmp_path)
        assert info.returncode == 0 and '"mode": "txt2img"' in info.stdout
    finally:
        stop(proc)


@pytest.mark.parametrize("mode", ["img2img", "inpaint"])
def test_image_modes_from_environment_and_cli(tmp_path, mode):
    port = free_port()
    proc = start(mode, environ=env(IMAGEGEN_MODEL="tiny", IMAGEGEN_PORT=str(port), IMAGEGEN_DEVICE="cpu",
                                   IMAGEGEN_DEFAULT_SIZE="64"))
    try:
        with ImageGenClient(mode, f"127.0.0.1:{port}") as client:
            assert client.wait_until_serving(120)
            assert client.info().mode == mode
        (tmp_path / "in.png").write_bytes(png())
        (tmp_path / "mask.png").write_bytes(box_mask())
        args = [mode, "--addr", f"127.0.0.1:{port}", "--image", "in.png", "--strength", "0.6", "--steps", "5",
                "--out", "out.png", "--seed", "3"]
        if mode == "inpaint":
            args += ["--mask", "mask.png"]
        done = cli(*args, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert Image.open(tmp_path / "out.png").size == (64, 64)
        params = split_infotext(read_infotext((tmp_path / "out.png").read_bytes()))[2]
        assert params["Denoising strength"] == "0.6"
    finally:
        stop(proc)


def test_sigterm_finishes_in_flight_work_refuses_new_and_exits():
    port = free_port()
    proc = start("txt2img", "--model", "tiny", "--port", str(port), "--default-size", "64", "--grace", "60")
    try:
        client = ImageGenClient("txt2img", f"127.0.0.1:{port}")
        assert client.wait_until_serving(120)
        call = client.stream(request_for("txt2img", steps=60, width=256, height=256))
        assert isinstance(next(call), Queued)
        assert isinstance(next(call), Progress)  # running now
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        with pytest.raises(grpc.RpcError) as err:
            client.generate(request_for("txt2img"), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        events = list(call)
        assert isinstance(events[-1], Result)  # the in-flight request completed
        assert proc.wait(timeout=30) == 0
        client.close()
    finally:
        stop(proc)


def test_the_probe_port_answers_until_sigterm_and_the_process_exits_cleanly():
    port, probe_port = free_port(), free_port()
    proc = start("txt2img", "--model", "tiny", "--port", str(port), "--default-size", "64",
                 "--health-port", str(probe_port), "--warmup", "false")
    try:
        with ImageGenClient("txt2img", f"127.0.0.1:{probe_port}") as probe:
            assert probe.wait_until_serving(120)
            assert probe.info().mode == "txt2img"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0  # both servers stopped before the interpreter exits (no abort)
    finally:
        stop(proc)


def test_sigterm_past_grace_gives_unavailable_and_exits_in_time():
    port = free_port()
    proc = start("txt2img", "--model", "tiny", "--port", str(port), "--default-size", "64", "--grace", "1")
    try:
        client = ImageGenClient("txt2img", f"127.0.0.1:{port}")
        assert client.wait_until_serving(120)
        call = client.stream(request_for("txt2img", steps=150, width=512, height=512))
        next(call), next(call)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        with pytest.raises(grpc.RpcError) as err:
            list(call)
        assert err.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
        assert proc.wait(timeout=20) == 0
        assert time.monotonic() - started < 10
        client.close()
    finally:
        stop(proc)


def test_model_that_cannot_be_found_fails_with_one_clear_line(tmp_path):
    proc = start("txt2img", "--model", "no-such-org/no-such-model", "--port", str(free_port()))
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "no-such-org/no-such-model" in lines[0] and "Hugging Face" in lines[0]
    assert "Traceback" not in err


def test_local_folder_that_is_not_a_model_fails_clearly(tmp_path):
    proc = start("img2img", "--model", str(tmp_path), "--port", str(free_port()))
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "not a diffusers model folder" in err and "Traceback" not in err


def test_port_in_use_fails_clearly():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = start("txt2img", "--model", "tiny", "--port", str(port))
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "could not listen" in err
