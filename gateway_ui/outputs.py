"""Outputs kept on disk: every final image, as its service sent it, under <root>/<mode>/<YYYY-MM-DD>/.

Files are named <NNNNN>-<seed>.<ext> (ext from the image's type: png, jpg, webp). Numbers count on
within a day's folder, across restarts (the folder's highest number is read from the names once).
A file is written under a hidden temporary name and renamed, so a crash never leaves a half image
under a real name. The History tab lists the folders by name and date only: no image is opened.
Only regular files are listed (a directory or a symlink named like an image is not one of ours).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import threading
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from imagegen.v1.contract import FORMAT_BY_MIME, MODE_NAMES

log = logging.getLogger("gateway")

_NAME = re.compile(r"^(\d+)-(\d+)\.(png|jpg|webp)$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
EXTRAS = "extras"  # the Extras tab's upscaled images: a folder beside the modes'
FOLDERS = (*MODE_NAMES, EXTRAS)  # the folders History lists and finds names in


class SaveError(Exception):
    """Images that could not be kept on disk, in words for the browser (no path: the log has it)."""


class SavedOutput(NamedTuple):
    """One saved image, known from its name and date alone. A tuple in newest-last order (day, time
    written, number): a folder of 10,000 sorts in milliseconds."""

    day: str
    mtime_ns: int
    number: int
    mode: str
    seed: int
    path: str

    @property
    def name(self) -> str:
        """mode/day/file: what the History tab shows (relative to the outputs folder)."""
        return f"{self.mode}/{self.day}/{os.path.basename(self.path)}"


def _reason(err: OSError) -> str:
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full"
    if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "the outputs folder is read-only"
    return "the outputs folder cannot be written"


class OutputStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._lock = threading.Lock()  # concurrent generations of one folder take distinct numbers
        self._next: dict[Path, int] = {}  # folder -> its next number, once read from its names

    def folder(self, mode: str, when: datetime | None = None) -> Path:
        return self.root / mode / (when or datetime.now()).strftime("%Y-%m-%d")

    def _take_number(self, folder: Path) -> int:
        if folder not in self._next:
            numbers = [int(m[1]) for m in map(_NAME.match, os.listdir(folder)) if m]
            self._next[folder] = max(numbers, default=0) + 1
        number = self._next[folder]
        self._next[folder] = number + 1
        return number

    def save(self, mode: str, images, when: datetime | None = None) -> list[Path]:
        """Keep each GeneratedImage (its own bytes) on disk; returns the paths. Raises SaveError when
        any cannot be written (the others stay saved); the caller still has every result."""
        folder = self.folder(mode, when)
        saved = []
        for image in images:
            fmt = FORMAT_BY_MIME.get(image.mime_type)
            tmp = None
            try:
                with self._lock:
                    folder.mkdir(parents=True, exist_ok=True)
                    number = self._take_number(folder)
                final = folder / f"{number:05d}-{image.seed}.{fmt.extension if fmt else 'png'}"
                tmp = folder / f".{final.name}.tmp"  # hidden, and the same folder: the rename is atomic
                with open(tmp, "wb") as f:
                    f.write(image.data)
                    f.flush()
                    os.fsync(f.fileno())  # the bytes are on disk before the name is
                os.rename(tmp, final)
                saved.append(final)
            except OSError as err:
                log.warning("outputs: could not save a %s image in %s: %s", mode, folder, err)
                if tmp is not None:
                    try:
                        tmp.unlink(missing_ok=True)
                    except OSError:
                        pass
                unsaved = len(images) - len(saved)
                raise SaveError(f"{unsaved} of {len(images)} {mode} image(s) not saved to disk: {_reason(err)}. "
                                "The result is shown here; download it to keep it.") from None
        return saved

    def listing(self, mode: str | None = None) -> list[SavedOutput]:
        """Saved images, newest first (by day, then time written, then number), from names and dates only."""
        if mode and mode not in FOLDERS:
            return []  # a folder's name only: the listing never leaves the outputs folder
        found = []
        for m in [mode] if mode else FOLDERS:
            try:
                days = [d for d in os.scandir(self.root / m)
                        if d.is_dir(follow_symlinks=False) and _DAY.match(d.name)]
            except OSError:
                continue
            for day in days:
                try:
                    entries = list(os.scandir(day.path))
                except OSError:
                    continue
                for entry in entries:
                    match = _NAME.match(entry.name)
                    if not match:
                        continue  # a temporary file, or something else put there
                    try:
                        if not entry.is_file(follow_symlinks=False):
                            continue  # a folder, a link, a pipe named like an image: never ours
                        mtime = entry.stat(follow_symlinks=False).st_mtime_ns
                    except OSError:
                        continue  # removed meanwhile
                    found.append(SavedOutput(day.name, mtime, int(match[1]), m, int(match[2]), entry.path))
        found.sort(reverse=True)
        return found

    def find(self, name: str) -> Path | None:
        """The file of a listed name (mode/day/file), only inside the outputs folder; None if not there."""
        parts = name.split("/")
        if len(parts) != 3 or parts[0] not in FOLDERS or not _DAY.match(parts[1]) or not _NAME.match(parts[2]):
            return None
        path = self.root.joinpath(*parts)
        try:
            regular = stat.S_ISREG(os.lstat(path).st_mode) and not os.path.islink(path.parent)
        except OSError:
            return None
        return path if regular else None


def page_of(items: list, page: int, size: int) -> tuple[list, int, int]:
    """(the items of page `page` (1-based, clamped), that page, the number of pages)."""
    pages = max(1, -(-len(items) // size))
    page = min(max(1, int(page or 1)), pages)
    return items[(page - 1) * size: page * size], page, pages
