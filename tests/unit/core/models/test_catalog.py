"""The catalogue of checkpoints: names (never paths), choosing one, A1111's short hashes."""

from __future__ import annotations

import hashlib

import pytest

from services.core.errors import InvalidArgument
from services.core.models.catalog import Catalog, Entry, name_of, short_hash


@pytest.mark.parametrize("model, name", [
    ("tiny", "tiny"), ("sd15", "sd15"), ("CompVis/stable-diffusion-v1-4", "stable-diffusion-v1-4"),
    ("/models/model.safetensors", "model"), ("/models/v1-5.ckpt", "v1-5"), ("/models/my-folder", "my-folder"),
    ("runwayml/stable-diffusion-v1.5", "stable-diffusion-v1.5"),  # a dot that is no checkpoint suffix stays
])
def test_a_model_is_named_by_its_last_path_part_without_extension(model, name):
    assert name_of(model) == name


def test_a_request_names_a_listed_model_or_none():
    catalog = Catalog([Entry("base", "/m/base.safetensors", is_default=True), Entry("fine", "/m/fine"),
                       Entry("inp", "/m/inp", unusable="an inpainting UNet (9 input channels)")])
    assert catalog.choose("").name == "base" and catalog.choose("fine").name == "fine"
    for bad in ("other", "/m/fine", "../fine", "fine.safetensors"):
        with pytest.raises(InvalidArgument) as refused:
            catalog.choose(bad)
        assert refused.value.field == "params.model" and "base, fine, inp" in str(refused.value)
    with pytest.raises(InvalidArgument, match="9 input channels"):
        catalog.choose("inp")


def test_the_short_hash_is_the_first_10_hex_of_the_file_or_of_a_folders_unet_weights(tmp_path):
    single = tmp_path / "model.safetensors"
    single.write_bytes(b"weights" * 1000)
    assert short_hash(str(single), tmp_path, False) == hashlib.sha256(single.read_bytes()).hexdigest()[:10]
    folder = tmp_path / "folder"
    (folder / "unet").mkdir(parents=True)
    (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"unet")
    (folder / "text_encoder").mkdir()
    (folder / "text_encoder" / "model.safetensors").write_bytes(b"text")
    assert short_hash(str(folder), tmp_path, False) == hashlib.sha256(b"unet").hexdigest()[:10]
    assert short_hash(str(tmp_path / "nothing"), tmp_path, False) == ""  # neither file nor folder nor hub id
    # A preset built on the device has no file: a stable hash of its name and mode, different per mode.
    assert short_hash("sd15", tmp_path, False) == short_hash("sd15", tmp_path, False) != short_hash(
        "sd15", tmp_path, True)


def fake_folder(root, name: str, weights: bytes | None = None, in_channels: int = 4):
    """A diffusers folder as the scan reads it (configs; UNet weights only when given)."""
    import json

    folder = root / name
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    unet = {"in_channels": in_channels, "cross_attention_dim": 768}
    (folder / "unet" / "config.json").write_text(json.dumps(unet))
    if weights is not None:
        (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(weights)
    return folder


def test_a_rescan_adds_new_checkpoints_drops_vanished_ones_and_replaces_changed_ones(tmp_path, caplog):
    import os
    import shutil

    caplog.set_level("INFO", logger="services.core.models.catalog")
    for name in ("base", "kept", "gone", "busy"):
        fake_folder(tmp_path, name, b"unet " + name.encode())
    catalog = Catalog.build("base", tmp_path, takes_mask=False)
    kept, base = catalog.by_name("kept"), catalog.default
    kept.hash = "cafe"
    dropped = []
    fake_folder(tmp_path, "new")
    (tmp_path / "notes.txt").write_text("no model")
    shutil.rmtree(tmp_path / "gone")
    shutil.rmtree(tmp_path / "busy")
    weights = tmp_path / "kept" / "unet" / "diffusion_pytorch_model.safetensors"
    with catalog.using("busy") as busy:
        done = catalog.rescan(on_drop=dropped.append)
        assert (done.added, done.removed, done.changed, done.kept) == (["new"], ["gone"], [], ["busy"])
        assert catalog.names() == ["base", "kept", "new", "busy"]
        assert catalog.by_name("kept") is kept and kept.hash == "cafe"  # unchanged: reused, hash kept
        assert catalog.default is base and dropped == ["gone"]
        with pytest.raises(InvalidArgument, match="removed from the models folder") as refused:
            catalog.choose("busy")
        assert refused.value.field == "params.model"
        assert busy.removed
    assert "busy" not in catalog.names()  # its last call is done
    assert "notes.txt" in caplog.text
    weights.write_bytes(b"other weights, another size")
    os.utime(weights, ns=(1, 1))
    done = catalog.rescan(on_drop=dropped.append)
    assert done.changed == ["kept"] and dropped == ["gone", "kept"]
    assert catalog.by_name("kept") is not kept and catalog.by_name("kept").hash == ""  # hashed again
    shutil.rmtree(tmp_path / "base")
    done = catalog.rescan(on_drop=dropped.append)
    assert catalog.default is base and not done.removed and dropped == ["gone", "kept"]  # the default stays


def test_a_rescan_without_a_models_folder_changes_nothing():
    catalog = Catalog.single("tiny")
    assert catalog.rescan().describe() == "no change" and catalog.names() == ["tiny"]
