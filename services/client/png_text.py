"""One text chunk of a PNG, read without Pillow's limits on the others.

Pillow refuses a whole PNG when any compressed text chunk inflates past PngImagePlugin.MAX_TEXT_CHUNK
(1 MiB), and ComfyUI keeps its workflow in one. Reading parameters needs a single chunk: this walks the
chunk list (https://www.w3.org/TR/png/#5Chunk-layout), decodes only the chunk of the keyword asked for,
inflating a bounded number of bytes, and gives the file without its text chunks for Pillow to check and
read EXIF from (no text chunk holds pixels).
"""

from __future__ import annotations

import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"
TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
_HEADER = struct.Struct(">I4s")  # length, type; then the data and a CRC of type + data


def is_png(data: bytes) -> bool:
    return data[:8] == SIGNATURE


def _chunks(data: bytes):
    """(type, start, end) of each chunk in file order, to IEND or to where the file stops making sense
    (what follows is Pillow's to judge)."""
    pos = len(SIGNATURE)
    while pos + _HEADER.size <= len(data):
        length, kind = _HEADER.unpack_from(data, pos)
        end = pos + _HEADER.size + length + 4
        if end > len(data):
            return
        yield kind, pos, end
        if kind == b"IEND":
            return
        pos = end


def _inflate(data: bytes, limit: int) -> tuple[bytes, bool] | None:
    """(at most `limit` bytes of zlib data inflated, whether there was more); None when it is not zlib."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, limit)
    except zlib.error:
        return None
    return out, bool(inflater.unconsumed_tail)


def _text(kind: bytes, body: bytes, limit: int) -> str | None:
    """The text of a tEXt, zTXt or iTXt chunk's body after its keyword, from at most `limit` bytes (a
    longer one is cut, so it reads as longer than any caller takes); None when it cannot be decoded (as
    Pillow reads them: tEXt and zTXt Latin-1, iTXt UTF-8)."""
    cut = False
    if kind == b"tEXt":
        raw, cut = body[:limit], len(body) > limit
    elif kind == b"zTXt":
        if body[:1] != b"\0":
            return None
        inflated = _inflate(body[1:], limit)
        raw, cut = inflated if inflated is not None else (b"", False)  # Pillow: broken data is empty text
    else:
        if len(body) < 2 or body[1] != 0:
            return None
        compressed, rest = body[0], body[2:]
        parts = rest.split(b"\0", 2)
        if len(parts) != 3:
            return None
        raw = parts[2]
        if compressed:
            inflated = _inflate(raw, limit)
            if inflated is None:
                return None
            raw, cut = inflated
        else:
            raw, cut = raw[:limit], len(raw) > limit
        try:
            return raw.decode("utf-8", errors="replace" if cut else "strict")
        except UnicodeDecodeError:
            return None
    return raw.decode("latin-1")


def read_text(data: bytes, keyword: str, limit: int) -> tuple[str | None, bytes]:
    """(the text of the PNG's last `keyword` chunk, or None; the file without its text chunks).

    The text is read from at most `limit` bytes of the chunk; a chunk whose checksum is wrong is not
    read. Other text chunks are skipped unread, whatever their size."""
    view, key, text = memoryview(data), keyword.encode("latin-1"), None
    kept, done = [view[:len(SIGNATURE)]], len(SIGNATURE)
    for kind, start, end in _chunks(data):
        done = end
        if kind not in TEXT_CHUNKS:
            kept.append(view[start:end])
            continue
        body = view[start + _HEADER.size:end - 4]
        name, sep, _ = bytes(body[:80]).partition(b"\0")  # keywords are 1..79 bytes
        if not sep or name != key:
            continue
        if zlib.crc32(view[start + 4:end - 4]) != int.from_bytes(view[end - 4:end], "big"):
            continue
        found = _text(kind, bytes(body[len(name) + 1:]), limit)
        if found is not None:
            text = found
    kept.append(view[done:])  # whatever the walk could not read: Pillow decides what it is
    return text, b"".join(kept)
