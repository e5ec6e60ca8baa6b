"""`make run` as a newcomer sees it: three services and the gateway start, work, and stop on Ctrl-C."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

from services.client import ImageGenClient, make_request
from services.launch import PORTS_PER_COPY, ports
from tests.conftest import CACHE_DIR, free_port

ROOT = Path(__file__).resolve().parents[2]


def child_pids(parent: int) -> list[str]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == str(parent):
            pids.append(stat.parent.name)
    return pids


def pixels(result) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(result.images[0].data)).convert("RGB"), dtype=np.int16)


def free_block(count: int) -> int:
    """The first of `count` consecutive ports that are free now."""
    while True:
        base = free_port()
        if base + count - 1 > 65535:
            continue
        sockets = []
        try:
            for port in range(base, base + count):
                sockets.append(socket.socket())
                sockets[-1].bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()


def test_launch_runs_all_four_and_ctrl_c_stops_them(tmp_path):
    from gradio_client import Client

    # One setting moves every port (gRPC, metrics, gateway): a second copy beside `make run`'s defaults.
    base = free_block(PORTS_PER_COPY)
    gateway_port = ports(base).gateway
    env = {**os.environ, "IMAGEGEN_CACHE_DIR": str(CACHE_DIR), "IMAGEGEN_DEFAULT_SIZE": "64",
           "IMAGEGEN_BASE_PORT": str(base), "GATEWAY_OUTPUTS_DIR": str(tmp_path / "outputs")}
    for name in ("IMAGEGEN_METRICS_PORT", "GATEWAY_PORT"):
        env.pop(name, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.launch"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "launch: open" in line:
                break
        assert any(f"http://127.0.0.1:{gateway_port}/" in line for line in lines), lines
        client = Client(f"http://127.0.0.1:{gateway_port}/", verbose=False)
        _gallery, seeds, _info = client.predict("fox", "", 2, 7.5, 64, 64, 9, 1, "model default", api_name="/txt2img")
        assert [p.name for p in (tmp_path / "outputs" / "txt2img").glob("*/*")] == ["00001-9.png"]  # kept on disk
        assert seeds == "9"
        # Every picker filled: the services list the sample LoRAs and embeddings, and the sample LoRA
        # changes the image.
        with ImageGenClient("txt2img", f"127.0.0.1:{base}", timeout=120) as txt2img:
            info = txt2img.info()
            assert {"tiny-lora", "tiny-xl-lora"} <= set(info.loras)
            assert "tiny-embedding" in {embedding.name for embedding in info.embeddings}
            plain, tagged = (pixels(txt2img.generate(make_request("txt2img", prompt, steps=2, width=64, height=64,
                                                                  seed=9)))
                             for prompt in ("fox", "fox <lora:tiny-lora:1>"))
            assert np.abs(plain - tagged).max() > 3
        for offset, mode in enumerate(("txt2img", "img2img", "inpaint")):  # metrics follow the base port too
            with urllib.request.urlopen(f"http://127.0.0.1:{base + 3 + offset}/metrics", timeout=5) as reply:
                assert f'mode="{mode}"'.encode() in reply.read()
        children = child_pids(proc.pid)
        assert len(children) == 4
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        for pid in children:
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
