"""Detection of media embedded in strings: the contracts carry metadata only, never content."""

import base64
import binascii
import re

_DATA_URI = re.compile(r"data:[a-z0-9.+-]+/[a-z0-9.+-]+[;,]|data:[^,]{0,64};base64,", re.IGNORECASE)
# A run long enough to hold a media header once base64-encoded (standard or URL-safe alphabet).
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{16,}")


def _media_kind(head: bytes) -> str | None:
    """Name the media format whose magic number starts `head`, if any."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp":
        return "mp4"
    return None


def _decode_head(run: str) -> bytes:
    """Decode the first 24 characters of a base64 run (enough for every header checked)."""
    chunk = run[:24].replace("-", "+").replace("_", "/")
    chunk = chunk[: len(chunk) - len(chunk) % 4]
    try:
        return base64.b64decode(chunk, validate=True)
    except (binascii.Error, ValueError):
        return b""


def embedded_media(value: str) -> str | None:
    """Say why `value` looks like embedded media (a data: URI, encoded image or video), or None."""
    if _DATA_URI.search(value):
        return "data URI"
    raw_kind = _media_kind(value[:16].encode("latin-1", errors="ignore"))
    if raw_kind is not None:
        return f"raw {raw_kind} bytes"
    for run in _BASE64_RUN.finditer(value):
        kind = _media_kind(_decode_head(run.group()))
        if kind is not None:
            return f"base64 {kind}"
    return None
