"""The History tab's pages and picks: only what can be served, names without folders."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from gradio import utils

from gateway_ui.history import pick, served, show_page
from gateway_ui.outputs import EXTRAS, OutputStore
from imagegen.v1 import imagegen_pb2 as pb

DAY = datetime(2026, 3, 14, 15, 9)


def saved(tmp_path, *seeds) -> OutputStore:
    store = OutputStore(tmp_path)
    store.save("txt2img", [pb.GeneratedImage(data=f"image {s}".encode(), mime_type="image/png", seed=s)
                           for s in seeds], DAY)
    return store


def test_a_page_shows_copies_in_gradio_s_cache_never_the_outputs_folder(tmp_path):
    store = saved(tmp_path, 7, 8)
    gallery, page, summary, names = show_page(store, "all", 1)
    assert page == 1 and "2 images" in summary
    assert names == ["txt2img/2026-03-14/00002-8.png", "txt2img/2026-03-14/00001-7.png"]
    for (copy, _caption), seed in zip(gallery, (8, 7)):
        assert utils.is_in_or_equal(copy, utils.get_upload_folder()) and not utils.is_in_or_equal(copy, tmp_path)
        assert Path(copy).read_bytes() == f"image {seed}".encode()


def test_what_cannot_be_served_is_skipped_not_the_page(tmp_path):
    assert served(str(tmp_path / "removed-meanwhile.png")) is None
    store = saved(tmp_path, 7, 8)
    unreadable = tmp_path / "txt2img" / "2026-03-14" / "00002-8.png"
    unreadable.unlink()
    unreadable.mkdir()  # listed by an older listing, now a folder: the copy fails
    assert served(str(unreadable)) is None
    gallery, _page, _summary, names = show_page(store, "all", 1)
    assert names == ["txt2img/2026-03-14/00001-7.png"] and len(gallery) == 1


def test_picked_shows_the_file_name_and_keeps_the_name_to_send(tmp_path):
    store = saved(tmp_path, 7)
    shown, name, _text, fields = pick(store, ["txt2img/2026-03-14/00001-7.png"], 0)
    assert (shown, name) == ("00001-7.png", "txt2img/2026-03-14/00001-7.png")
    assert "error" in fields  # no parameters in these bytes: said so, nothing fails
    assert pick(store, ["txt2img/2026-03-14/00009-7.png"], 0)[:2] == ("00009-7.png", "txt2img/2026-03-14/00009-7.png")
    assert pick(store, [], 0) == ("", "", "", {})


def test_upscaled_images_are_listed_with_the_modes_and_alone(tmp_path):
    store = saved(tmp_path, 7)
    store.save(EXTRAS, [pb.GeneratedImage(data=b"upscaled", mime_type="image/png")], DAY)
    gallery, _page, summary, names = show_page(store, "all", 1)
    assert "2 images" in summary
    assert sorted(names) == ["extras/2026-03-14/00001-0.png", "txt2img/2026-03-14/00001-7.png"]
    gallery, _page, _summary, names = show_page(store, EXTRAS, 1)
    assert names == ["extras/2026-03-14/00001-0.png"] and gallery[0][1] == "extras #1"  # no seed to show
    assert pick(store, names, 0)[:2] == ("00001-0.png", "extras/2026-03-14/00001-0.png")
    assert store.find("../extras/2026-03-14/00001-0.png") is None and show_page(store, "nowhere", 1)[3] == []
