"""Outputs kept on disk: names, numbers across restarts, temporary files, unwritable folders, listing."""

from __future__ import annotations

import os
import threading
from datetime import datetime
from pathlib import Path

import pytest

from gateway_ui.outputs import OutputStore, SaveError, page_of
from imagegen.v1 import imagegen_pb2 as pb

DAY = datetime(2026, 3, 14, 15, 9)


def image(seed: int, mime: str = "image/png", data: bytes | None = None) -> pb.GeneratedImage:
    return pb.GeneratedImage(data=data or f"image {seed}".encode(), mime_type=mime, seed=seed)


def names(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def test_images_are_kept_as_sent_and_numbers_go_on_after_a_restart(tmp_path):
    paths = OutputStore(tmp_path).save("txt2img", [image(7), image(8)], DAY)
    folder = tmp_path / "txt2img" / "2026-03-14"
    assert paths == [folder / "00001-7.png", folder / "00002-8.png"]
    assert (folder / "00001-7.png").read_bytes() == b"image 7"
    restarted = OutputStore(tmp_path)  # a new gateway process on the same folder
    assert restarted.save("txt2img", [image(9)], DAY) == [folder / "00003-9.png"]
    # Another day, another mode: each folder counts from 1.
    assert restarted.save("inpaint", [image(1)], datetime(2026, 3, 15)) == [
        tmp_path / "inpaint" / "2026-03-15" / "00001-1.png"]


def test_jpeg_and_webp_keep_their_extension(tmp_path):
    paths = OutputStore(tmp_path).save("img2img", [image(1, "image/jpeg"), image(2, "image/webp")], DAY)
    assert [p.name for p in paths] == ["00001-1.jpg", "00002-2.webp"]


def test_no_temporary_file_is_left_and_a_crashed_one_is_ignored(tmp_path):
    folder = tmp_path / "txt2img" / "2026-03-14"
    folder.mkdir(parents=True)
    (folder / ".00004-3.png.tmp").write_bytes(b"half an ima")  # what a crash mid-write leaves
    store = OutputStore(tmp_path)
    assert store.save("txt2img", [image(5)], DAY) == [folder / "00001-5.png"]
    assert names(folder) == [".00004-3.png.tmp", "00001-5.png"]  # written under a temporary name, renamed
    assert [o.name for o in store.listing()] == ["txt2img/2026-03-14/00001-5.png"]


def test_concurrent_generations_take_distinct_numbers(tmp_path):
    store = OutputStore(tmp_path)
    threads = [threading.Thread(target=lambda i=i: [store.save("txt2img", [image(i)], DAY) for _ in range(5)])
               for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    numbers = sorted(int(n.split("-")[0]) for n in names(tmp_path / "txt2img" / "2026-03-14"))
    assert numbers == list(range(1, 41))


@pytest.fixture
def read_only_dir(tmp_path) -> Path:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):  # root ignores permissions: a kernel file system refuses instead
        folder = Path("/sys/imagegen-outputs")
    yield folder
    (tmp_path / "ro").chmod(0o755)


def test_an_unwritable_folder_is_a_plain_warning(read_only_dir):
    with pytest.raises(SaveError) as caught:
        OutputStore(read_only_dir).save("txt2img", [image(1), image(2)], DAY)
    message = str(caught.value)
    assert message.startswith("2 of 2 txt2img image(s) not saved to disk: the outputs folder is read-only")
    assert str(read_only_dir) not in message  # the browser never sees a path


def test_ten_thousand_outputs_list_newest_first_in_pages_without_opening_a_file(tmp_path):
    # Empty files: the listing works from names and dates alone (no image could be decoded from these).
    old, new = tmp_path / "txt2img" / "2026-01-01", tmp_path / "img2img" / "2026-01-02"
    for folder, base in ((old, 1_000_000_000), (new, 1_000_000_000)):
        folder.mkdir(parents=True)
        for n in range(1, 5001):
            path = folder / f"{n:05d}-{n * 3}.png"
            path.touch()
            os.utime(path, ns=(base + n, base + n))
    (new / "notes.txt").touch()
    store = OutputStore(tmp_path)
    listing = store.listing()
    assert len(listing) == 10_000
    first, page, pages = page_of(listing, 1, 24)
    assert (page, pages) == (1, 417)
    assert [o.name for o in first[:2]] == ["img2img/2026-01-02/05000-15000.png", "img2img/2026-01-02/04999-14997.png"]
    last, page, _ = page_of(listing, 999, 24)  # past the end: the last page
    assert page == 417 and len(last) == 10_000 - 416 * 24
    assert last[-1].name == "txt2img/2026-01-01/00001-3.png" and last[-1].seed == 3
    assert [o.mode for o in store.listing("txt2img")[:1]] == ["txt2img"]
    assert len(store.listing("txt2img")) == 5000


def test_find_stays_inside_the_outputs_folder(tmp_path):
    store = OutputStore(tmp_path)
    [path] = store.save("txt2img", [image(7)], DAY)
    assert store.find("txt2img/2026-03-14/00001-7.png") == path
    assert store.find("../../etc/passwd") is None
    assert store.find("txt2img/2026-03-14/../../x.png") is None
    assert store.find("txt2img/2026-03-14/00009-7.png") is None
    assert store.listing("../txt2img") == [] and len(store.listing("txt2img")) == 1


def test_settings_name_the_folder_and_turn_saving_off():
    from gateway_ui.config import load_config

    assert (load_config([], environ={}).outputs_dir, load_config([], environ={}).save) == ("outputs", True)
    assert load_config([], environ={"GATEWAY_OUTPUTS_DIR": "/data/out"}).outputs_dir == "/data/out"
    assert load_config(["--outputs-dir", "x"], environ={"GATEWAY_OUTPUTS_DIR": "y"}).outputs_dir == "x"
    assert load_config([], environ={"GATEWAY_SAVE": "0"}).save is False
    assert load_config(["--no-save"], environ={}).save is False


def test_only_regular_files_are_listed_and_found(tmp_path):
    store = OutputStore(tmp_path)
    [path] = store.save("txt2img", [image(7)], DAY)
    folder = path.parent
    (folder / "00002-5.png").mkdir()  # a folder named like an image
    outside = tmp_path / "secret.txt"
    outside.write_text("not an output")
    (folder / "00003-6.png").symlink_to(outside)  # a link named like one
    (folder / "00004-7.png").symlink_to(tmp_path / "gone")  # a broken link
    os.mkfifo(folder / "00005-8.png")  # a pipe
    (tmp_path / "img2img").mkdir()
    (tmp_path / "img2img" / "2026-03-15").symlink_to(folder)  # a day folder that is a link
    assert [o.name for o in store.listing()] == ["txt2img/2026-03-14/00001-7.png"]
    assert store.find("txt2img/2026-03-14/00001-7.png") == path
    for name in ("00002-5.png", "00003-6.png", "00004-7.png", "00005-8.png"):
        assert store.find(f"txt2img/2026-03-14/{name}") is None, name
    assert store.find("img2img/2026-03-15/00001-7.png") is None
