"""A models folder rescanned while the service runs (GetInfo's rescan_models, SIGHUP): new checkpoints are
found, files that are no checkpoints skipped, removed ones leave, changed ones are hashed again."""

from __future__ import annotations

import hashlib
import shutil
import signal
import threading

import pytest

from services.client import ImageGenClient
from services.client.errors import InvalidInput
from services.core.models.presets import ensure_tiny
from tests.conftest import CACHE_DIR, RunningService, free_port, request_for, wait_for
from tests.ldm_layout import write_single_file
from tests.services.crowds import all_at_once
from tests.services.test_model_pool import reseeded
from tests.services.test_process import start as start_process


@pytest.fixture(scope="module")
def spare(tmp_path_factory):
    """Checkpoints to drop into a models folder while a service runs: delta (a folder) and two versions
    of a single file."""
    root, base = tmp_path_factory.mktemp("spare"), ensure_tiny(CACHE_DIR, False)
    reseeded(base, root / "delta", 4)
    write_single_file(reseeded(base, root / "one", 5), root / "one.safetensors")
    write_single_file(reseeded(base, root / "two", 6), root / "two.safetensors")
    return root


def listed(client, rescan=False) -> list[str]:
    return [m.name for m in client.info(rescan=rescan).models]


def refused_model(client, name: str) -> str:
    with pytest.raises(InvalidInput) as refused:
        client.generate(request_for("txt2img", steps=2, model=name))
    assert refused.value.violations[0].field == "params.model"
    return refused.value.violations[0].description


def test_a_checkpoint_added_is_found_after_a_rescan_and_one_removed_leaves(tmp_path, spare, caplog):
    caplog.set_level("INFO", logger="services.core")
    folder = tmp_path / "models"
    reseeded(ensure_tiny(CACHE_DIR, False), folder / "alpha", 1)
    service = RunningService("txt2img", "--warmup", "false", "--models-dir", str(folder), "--model", "alpha",
                             "--model-config", str(ensure_tiny(CACHE_DIR, False)), "--engine", "pipeline")
    try:
        client = service.client
        assert "unknown model 'delta'" in refused_model(client, "delta")
        shutil.copytree(spare / "delta", folder / "delta")
        shutil.copy(spare / "one.safetensors", folder / "gamma.safetensors")
        (folder / "notes.txt").write_text("not a model")
        assert listed(client) == ["alpha"]  # GetInfo alone never reads the folder
        assert listed(client, rescan=True) == ["alpha", "delta", "gamma"]
        assert "skipped notes.txt" in caplog.text and "added delta, gamma" in caplog.text
        result = client.generate(request_for("txt2img", steps=2, model="delta"))
        assert "Model: delta," in result.images[0].infotext
        def hashed_as(file) -> bool:
            short = hashlib.sha256(file.read_bytes()).hexdigest()[:10]
            return wait_for(lambda: {m.name: m.hash for m in client.info().models}.get("gamma") == short)

        assert hashed_as(spare / "one.safetensors")
        # A changed file is hashed again (in the background); a removed one leaves the list, and its
        # weights leave memory.
        shutil.copy(spare / "two.safetensors", folder / "gamma.safetensors")
        shutil.rmtree(folder / "delta")
        assert listed(client, rescan=True) == ["alpha", "gamma"]
        assert hashed_as(spare / "two.safetensors")
        assert service.runtime.pool.held("delta") is None
        assert "unknown model 'delta'" in refused_model(client, "delta")
        assert client.generate(request_for("txt2img", steps=2)).images  # the default, back from host memory
        assert client.generate(request_for("txt2img", steps=2, model="gamma")).images
    finally:
        service.stop()


def test_a_removed_checkpoint_in_use_stays_until_its_call_is_done_and_rescans_never_stop_generation(
        tmp_path, spare):
    folder = tmp_path / "models"
    base = ensure_tiny(CACHE_DIR, False)
    reseeded(base, folder / "alpha", 1)
    shutil.copytree(spare / "delta", folder / "delta")
    service = RunningService("txt2img", "--warmup", "false", "--models-dir", str(folder), "--model", "alpha",
                             "--engine", "step")
    try:
        client, catalog = service.client, service.runtime.catalog
        with catalog.using("delta"):  # as a call that chose it and is not answered yet
            shutil.rmtree(folder / "delta")
            info = {m.name: m for m in client.info(rescan=True).models}
            assert "removed from the models folder" in info["delta"].unusable
            assert "cannot be used here" in refused_model(client, "delta")
        assert listed(client) == ["alpha"]
        # Rescans while a crowd generates (files coming and going): every request gets its image.
        stop, rescans = threading.Event(), []

        def churn():
            while not stop.is_set():
                if (folder / "beta").exists():
                    shutil.rmtree(folder / "beta")
                else:
                    shutil.copytree(spare / "delta", folder / "beta")
                rescans.append(client.info(rescan=True))
                stop.wait(0.1)  # a rescan every so often, not a loop that starves the 2-core machine's UNet

        churner = threading.Thread(target=churn)
        churner.start()
        try:
            wait_for(lambda: rescans, timeout=60)  # the churn is running before the crowd starts
            before, results = len(rescans), []
            for _ in range(20):  # crowds until at least two rescans ran while one generated
                results += all_at_once([lambda seed=seed: client.generate(request_for("txt2img", steps=3, seed=seed))
                                        for seed in range(3)])
                if len(rescans) - before >= 2:
                    break
        finally:
            stop.set()
            churner.join()
        assert all(len(result.images) == 1 for result in results) and len(rescans) - before >= 2
        assert client.health() == "SERVING"
    finally:
        service.stop()


def test_sighup_rescans_the_models_folder_of_a_running_service(tmp_path, spare):
    folder = tmp_path / "models"
    reseeded(ensure_tiny(CACHE_DIR, False), folder / "alpha", 1)
    port = free_port()
    proc = start_process("txt2img", "--models-dir", str(folder), "--model", "alpha", "--port", str(port),
                         "--device", "cpu", "--default-size", "64", "--warmup", "false")
    try:
        with ImageGenClient("txt2img", f"127.0.0.1:{port}", timeout=60) as client:
            assert client.wait_until_serving(120)
            assert "unknown model" in refused_model(client, "delta")
            shutil.copytree(spare / "delta", folder / "delta")
            proc.send_signal(signal.SIGHUP)
            assert wait_for(lambda: listed(client) == ["alpha", "delta"], timeout=30)
            assert client.generate(request_for("txt2img", steps=2, model="delta")).images
            assert client.health() == "SERVING"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        _out, log = proc.communicate(timeout=60)
    assert "received SIGHUP: rescanning the models folder" in log and "added delta" in log, log
