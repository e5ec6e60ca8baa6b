"""Prompt styles: AUTOMATIC1111's styles.csv (name, prompt, negative_prompt), applied by the gateway.

A style's prompt with a `{prompt}` placeholder wraps the prompt; without one it is appended after ", "
(after " " when the prompt ends with a comma), as A1111's merge_prompts does; styles apply in the order
chosen, to the prompt and the negative prompt alike. The services never see a style: they get the
merged prompts, and the infotext records those (as A1111's does).

The file is read again whenever it changes (A1111 rereads it on its refresh button), so an operator
edits it without a restart. A file that cannot be read or parsed leaves no styles, with a log line.
"""

from __future__ import annotations

import csv
import io
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
PLACEHOLDER = "{prompt}"
MAX_FILE_BYTES = 4 * 1024 * 1024  # A1111's own styles.csv files are a few KB; thousands of styles fit
MAX_STYLES_PER_REQUEST = 32


@dataclass(frozen=True)
class Style:
    name: str
    prompt: str = ""
    negative_prompt: str = ""


class UnknownStyle(ValueError):
    """A request named a style the file does not have (A1111 ignores it; here it changes the picture,
    so it is refused, naming the style and the ones there are)."""


def merge(style_prompt: str, prompt: str) -> str:
    """One style's text applied to a prompt (A1111's merge_prompts)."""
    if PLACEHOLDER in style_prompt:
        return style_prompt.replace(PLACEHOLDER, prompt)
    prompt, style_prompt = prompt.strip(), style_prompt.strip()
    parts = [part for part in (prompt, style_prompt) if part]
    return (" " if prompt.endswith(",") else ", ").join(parts)


def parse(text: str) -> list[Style]:
    """The styles of a styles.csv's text, in file order (a name seen again replaces the first, as A1111's
    dict does). A1111's columns: name, prompt, negative_prompt (its oldest files: text for prompt)."""
    styles: dict[str, Style] = {}
    for row in csv.DictReader(io.StringIO(text), skipinitialspace=True):
        name = (row.get("name") or "").strip()
        if not name:
            continue
        prompt = row.get("prompt") if row.get("prompt") is not None else row.get("text")
        styles[name] = Style(name, prompt or "", row.get("negative_prompt") or "")
    return list(styles.values())


class StyleBook:
    """The styles of one file (none without one), reread when the file changes."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path).expanduser() if path else None
        self._styles: list[Style] = []
        self._stamp: tuple | None = None
        self._lock = threading.Lock()

    def styles(self) -> list[Style]:
        if self.path is None:
            return []
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
        except OSError as exc:
            stamp = ("missing", str(exc))
        with self._lock:
            if stamp != self._stamp:
                self._stamp, self._styles = stamp, self._read(stamp)
            return self._styles

    def _read(self, stamp: tuple) -> list[Style]:
        if stamp[0] == "missing":
            log.warning("styles file %s cannot be read: %s; no styles", self.path, stamp[1])
            return []
        if stamp[1] > MAX_FILE_BYTES:
            log.warning("styles file %s is over %d bytes; no styles", self.path, MAX_FILE_BYTES)
            return []
        try:
            styles = parse(self.path.read_text(encoding="utf-8-sig"))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            log.warning("styles file %s is not a readable styles.csv: %s; no styles", self.path, exc)
            return []
        log.info("styles file %s: %d styles", self.path, len(styles))
        return styles

    def names(self) -> list[str]:
        return [style.name for style in self.styles()]

    def chosen(self, names) -> list[Style]:
        """The styles named, in order. Raises UnknownStyle."""
        names = list(names or [])
        if len(names) > MAX_STYLES_PER_REQUEST:
            raise UnknownStyle(f"at most {MAX_STYLES_PER_REQUEST} styles, not {len(names)}")
        by_name = {style.name: style for style in self.styles()}
        missing = [str(name) for name in names if name not in by_name]
        if missing:
            have = ", ".join(sorted(by_name)) or "none (the gateway has no --styles file)"
            raise UnknownStyle(f"no style named {', '.join(map(repr, missing))}; the styles are: {have}")
        return [by_name[name] for name in names]

    def apply(self, names, prompt: str, negative_prompt: str) -> tuple[str, str]:
        """(prompt, negative prompt) with the named styles applied in order. Raises UnknownStyle."""
        for style in self.chosen(names):
            prompt = merge(style.prompt, prompt)
            negative_prompt = merge(style.negative_prompt, negative_prompt)
        return prompt, negative_prompt


def apply_styles(book: StyleBook, request, names) -> None:
    """Apply the named styles to a contract request's prompts (a tab's; the API merges its own request
    fields). Raises UnknownStyle naming the style."""
    if names:
        params = request.params
        prompt, negative = params.prompt, params.negative_prompt
        params.prompt, params.negative_prompt = book.apply(names, prompt, negative)
        if "hires" in request.DESCRIPTOR.fields_by_name and request.HasField("hires"):
            hires = request.hires  # its own prompts are styled too, as A1111 styles its hires prompts
            hires.prompt, hires.negative_prompt = styled_hires(book, names, prompt, negative, hires.prompt,
                                                              hires.negative_prompt)


def styled_hires(book: StyleBook, names, prompt: str, negative: str, hires_prompt: str,
                 hires_negative: str) -> tuple[str, str]:
    """The hires fix's own (prompt, negative prompt) with the styles applied; each left "" (the first pass's,
    already styled) when it was."""
    if not (hires_prompt or hires_negative):
        return "", ""
    styled = book.apply(names, hires_prompt or prompt, hires_negative or negative)
    return styled[0] if hires_prompt else "", styled[1] if hires_negative else ""
