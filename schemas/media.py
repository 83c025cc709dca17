"""Detection of media embedded in strings: the contracts carry metadata only, never content.

An image or video file encoded as base64 always begins with the same few characters, wherever
the encoded file starts inside a longer string: `/9j/` for JPEG, `iVBORw0KGgo` for PNG, and so
on. Searching the text for those signatures (in the standard and URL-safe alphabets) finds
media glued to any prefix, and each signature is long enough (≥ 29 bits) that random
identifiers and hashes do not match by chance.
"""

import re

_DATA_URI = re.compile(r"data:[a-z0-9.+-]+/[a-z0-9.+-]+[;,]|data:[^,]{0,64};base64,", re.IGNORECASE)

_B64 = "[A-Za-z0-9+/]"
_SIGNATURES = re.compile(
    "|".join(
        [
            r"(?P<jpeg>/9j/[2-7w])",  # FF D8 FF, then a marker byte (E0-EF, DB, C0-C3)
            r"(?P<png>iVBORw0KGgo)",  # 89 'PNG' 0D 0A 1A 0A
            r"(?P<gif>R0lGOD[dl]h)",  # 'GIF87a' / 'GIF89a'
            rf"(?P<webp>UklGR{_B64}{{6}}XRUJQ)",  # 'RIFF' size 'WEBP'
            rf"(?P<mp4>AAAA{_B64}{_B64}Z0eX[A-D])",  # 00 00 00 size 'ftyp' brand
        ]
    )
)


def _raw_kind(value: str) -> str | None:
    """Name the format when the string itself starts with a media file's raw bytes."""
    head = value[:12].encode("latin-1", errors="ignore")
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith(b"\x00\x00") and head[4:8] == b"ftyp":
        return "mp4"
    return None


def embedded_media(value: str) -> str | None:
    """Say why `value` looks like embedded media (a data: URI, encoded image or video), or None."""
    if _DATA_URI.search(value):
        return "data URI"
    raw = _raw_kind(value)
    if raw is not None:
        return f"raw {raw} bytes"
    found = _SIGNATURES.search(value.replace("-", "+").replace("_", "/"))
    if found is not None:
        return f"base64 {found.lastgroup}"
    return None
