"""Detection of media embedded in text: the contracts carry metadata only, never content.

An image or video file begins with a few fixed bytes (its signature). Whatever the encoding a
sender picks, those bytes leave a trace that can be searched for in one pass:

- base64, standard or URL-safe, where a run of base64 characters starts, with the file zero to
  two bytes in (the characters that depend only on the signature's bits are fixed); anywhere
  else, random base64 (a PhotoDNA hash, a token in a URL) would match by chance;
- hex, upper or lower case, where a run of hex digits starts (or one or two bytes in), in runs
  longer than any digest, so a 64-digit SHA-256 or PDQ digest never matches;
- percent-encoding (`%FF%D8%FF`), and anything percent-encoded is searched again decoded;
- raw bytes, as the characters U+0080 to U+00FF that stand for them;
- `data:` URIs.

JSON escapes (`\\u00ff`, `\\/`) are undone before searching, and line breaks are ignored, so
neither hides a signature. Each string is searched on its own: a file cut across fields,
encoded after other base64, or hidden by an encoding not listed here, is not found; the cap on
a flag's free-form text bounds what could be carried that way. This is a net for media sent by
mistake or naively encoded, not a proof against a sender set on hiding bits.

All patterns are compiled into one RE2 automaton, which runs in time linear in the text
whatever the number of patterns (about 4 µs for 1.5 KB).

Signatures: JPEG, PNG, GIF, WebP, BMP, TIFF, HEIC and AVIF, MP4 and MOV (`ftyp`), QuickTime
atoms (`moov`, `mdat`), WebM and Matroska (EBML), AVI. Each is long enough that random
identifiers, hashes and URLs match it rarely (`tests/unit/test_media.py` measures the rate).
"""

import re
from collections.abc import Iterator, Sequence
from functools import cache
from urllib.parse import unquote_to_bytes

import re2

Byte = int | tuple[int, int] | None
"""A signature byte: its value, (value, mask) for the bits that are fixed, or None for any."""

_JPEG_MARKERS: list[Byte] = [(0xE0, 0xF0), (0xC0, 0xFC), 0xDB, 0xC4, 0xDD, 0xFE]

SIGNATURES: dict[str, list[list[Byte]]] = {
    "jpeg": [[0xFF, 0xD8, 0xFF, marker] for marker in _JPEG_MARKERS],
    "png": [[0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]],
    "gif": [list(b"GIF87a"), list(b"GIF89a")],
    "webp": [[*b"RIFF", None, None, None, None, *b"WEBP"]],
    "avi": [[*b"RIFF", None, None, None, None, *b"AVI "]],
    "bmp": [[*b"BM", None, None, None, None, 0, 0, 0, 0]],
    "tiff": [[*b"II*", 0, None, None, None], [*b"MM", 0, *b"*", None, None, None]],
    "heic": [
        [None, None, None, None, *b"ftyp", *brand]
        for brand in (b"heic", b"heix", b"hevc", b"mif1", b"msf1", b"avif", b"avis")
    ],
    "mp4": [[None, None, None, None, *b"ftyp", None, None]],
    "quicktime": [[None, None, None, None, *atom] for atom in (b"moov", b"mdat")],
    "matroska": [[0x1A, 0x45, 0xDF, 0xA3, None]],
}

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_HEX_RUN = 72
"""Hex is taken for a file only in a run of at least this many digits (36 bytes)."""


def _bits(signature: Sequence[Byte], align: int) -> list[int | None]:
    bits: list[int | None] = [None] * (8 * align)
    for spec in signature:
        value, mask = (spec, 0xFF) if isinstance(spec, int) else spec or (0, 0)
        bits += [(value >> (7 - i)) & 1 if (mask >> (7 - i)) & 1 else None for i in range(8)]
    return bits


def _base64(signature: Sequence[Byte], align: int, urlsafe: bool) -> str:
    """The characters base64 gives the signature `align` bytes into the encoded data, from the
    start of a run of base64 characters (a file is encoded from its first byte: matching only
    there keeps random base64, in a PhotoDNA hash or a URL's token, from matching by chance)."""
    bits = _bits(signature, align)
    classes: list[str | None] = []
    for start in range(0, len(bits), 6):
        chunk = (bits[start : start + 6] + [None] * 6)[:6]
        if all(bit is None for bit in chunk):
            classes.append(None)
            continue
        # The six bits as a mask of those fixed and their values: a character fits when its
        # value has them (a test of each bit on its own made every process start slower).
        fixed = sum(1 << (5 - i) for i, bit in enumerate(chunk) if bit is not None)
        wanted = sum(bit << (5 - i) for i, bit in enumerate(chunk) if bit is not None)
        chars = {char for value, char in enumerate(_ALPHABET) if value & fixed == wanted}
        if urlsafe:
            chars = {{"+": "-", "/": "_"}.get(char, char) for char in chars}
        classes.append("[" + "".join(re.escape(c) for c in sorted(chars)) + "]")
    while classes and classes[-1] is None:
        classes.pop()
    alphabet = "A-Za-z0-9_-" if urlsafe else "A-Za-z0-9+/"
    return f"(?:^|[^{alphabet}])" + "".join(f"[{alphabet}]" if c is None else c for c in classes)


def _hex_digit(value: int, mask: int) -> str:
    if mask == 0xF:
        return f"[{value:x}{value:X}]"
    digits = {d for d in range(16) if d & mask == value & mask}
    return "[" + "".join(f"{d:x}{d:X}" for d in sorted(digits)) + "]"


def _hex(signature: Sequence[Byte]) -> str:
    parts = []
    for spec in signature:
        value, mask = (spec, 0xFF) if isinstance(spec, int) else spec or (0, 0)
        parts.append(_hex_digit(value >> 4, mask >> 4) + _hex_digit(value & 0xF, mask & 0xF))
    return "".join(parts)


def _percent(signature: Sequence[Byte]) -> str:
    parts = []
    for spec in signature:
        if spec is None:
            parts.append("(?:%[0-9A-Fa-f]{2}|[^%])")
        else:
            parts.append("%" + _hex([spec]))
    return "".join(parts)


_ANY_CHAR = "(?:[\\x00-\\x7f]|[\\xc2-\\xc3][\\x80-\\xbf])"
"""One character of U+0000 to U+00FF, as UTF-8: a byte of a file carried as text."""


_IN_STRING = "(?:[\\x00-\\x21\\x23-\\x7f]|[\\xc2-\\xc3][\\x80-\\xbf])"
"""As `_ANY_CHAR`, but never the quote that ends a JSON string."""


_CONTROL = "(?:[\\x00-\\x1f\\x7f]|\\xc2[\\x80-\\x9f])"
"""A control character (C0, DEL or C1) as UTF-8: part of a file, never of a name."""


_AS_TEXT = [re.escape(chr(byte).encode("utf-8").decode("latin-1")) for byte in range(256)]
"""Each byte's pattern: the UTF-8 of the character U+0000 to U+00FF that stands for it."""


def _raw(signature: Sequence[Byte]) -> str:
    """The signature as the UTF-8 text of the characters U+0000 to U+00FF that stand for its
    bytes (how a file's bytes arrive inside a JSON string)."""
    parts = []
    for spec in signature:
        if spec is None:
            parts.append(_ANY_CHAR)
            continue
        if spec == -1:  # a control character here
            parts.append(_CONTROL)
            continue
        value, mask = (spec, 0xFF) if isinstance(spec, int) else spec
        chars = [_AS_TEXT[byte] for byte in range(256) if byte & mask == value & mask]
        parts.append("(?:" + "|".join(chars) + ")")
    return "".join(parts)


def _binary(signature: Sequence[Byte]) -> bool:
    """True when the signature has a byte no text of letters would: plain-text signatures
    (GIF8?a, RIFF, ftyp) count as a file only at the start of a string."""
    return any(isinstance(spec, int) and not 0x20 <= spec < 0x7F for spec in signature)


def _patterns() -> Iterator[tuple[str, str]]:
    for kind, signatures in SIGNATURES.items():
        for signature in signatures:
            for align in range(3):
                for urlsafe in (False, True):
                    yield f"base64 {kind}", _base64(signature, align, urlsafe)
            # At a hex run's start (or one or two bytes in), and only in a run longer than any
            # digest (SHA-256 and PDQ are 64 digits, a UUID's groups 12): a digest never matches.
            rest = max(_HEX_RUN - 2 * (len(signature) + 2), 0)
            yield (
                f"hex {kind}",
                "(?:^|[^0-9A-Fa-f])(?:[0-9A-Fa-f]{2}){0,2}"
                + _hex(signature)
                + f"[0-9A-Fa-f]{{{rest}}}",
            )
            yield f"percent-encoded {kind}", _percent(signature)
            raw = _raw(signature)
            if _binary(signature):
                yield f"raw {kind} bytes", raw
            else:  # letters alone are no file: a control character must be in it or follow
                yield f"raw {kind} bytes", f"{raw}{_IN_STRING}{{0,8}}{_CONTROL}"
                for i, spec in enumerate(signature):
                    if spec is None:
                        controlled = [*signature[:i], -1, *signature[i + 1 :]]
                        yield f"raw {kind} bytes", _raw(controlled)
    yield "data URI", r"(?i:data:[a-z0-9.+-]+/[a-z0-9.+-]+[;,]|data:[^,\"]{0,64};base64,|data:,)"


def _latin1() -> re2.Options:
    """Bytes as bytes: each byte of the text is one character (UTF-8 text is searched for the
    bytes of its characters)."""
    options = re2.Options()
    options.encoding = re2.Options.Encoding.LATIN1
    options.never_capture = True
    options.max_mem = 64 << 20
    return options


_NAMED = list(_patterns())
_SCANNER = re2.compile(
    "|".join(f"(?:{pattern})" for _, pattern in _NAMED).encode("latin-1"), options=_latin1()
)


@cache
def _each() -> list[tuple[str, re.Pattern[bytes]]]:
    """Each pattern on its own, to name what the automaton found (compiled when first needed:
    a hit is rare, and compiling them all would add a tenth of a second to every start)."""
    return [(name, re.compile(pattern.encode("latin-1"))) for name, pattern in _NAMED]


_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|(.))", re.DOTALL)
_SIMPLE = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}


def _unescape(text: str) -> str:
    """Undo JSON string escapes over a whole JSON text (the quotes stay escaped as `"`)."""

    def one(match: re.Match[str]) -> str:
        code, char = match.groups()
        if code is not None:
            return chr(int(code, 16))
        return _SIMPLE.get(char, char)

    return _ESCAPE.sub(one, text)


def _name(found: bytes) -> str:
    for name, pattern in _each():
        if pattern.search(found):
            return name
    return "media"  # pragma: no cover - the automaton and the patterns are the same


def _search(data: bytes) -> str | None:
    hit = _SCANNER.search(data)
    if hit is None and (b"\n" in data or b"\r" in data):  # base64 broken into lines
        data = data.replace(b"\n", b"").replace(b"\r", b"")
        hit = _SCANNER.search(data)
    return None if hit is None else _name(data[max(hit.start() - 1, 0) : hit.end() + 1])


def _scan(data: bytes) -> str | None:
    """Search the text, then (at most twice) what percent-decoding makes of it: a bound, so a
    string percent-encoded a thousand times over costs no more than a few passes."""
    for _ in range(3):
        found = _search(data)
        if found is not None or b"%" not in data:
            return found
        decoded = unquote_to_bytes(data)
        if decoded == data:
            return None
        data = decoded
    return None


def media_in_json(raw: bytes) -> str | None:
    """Say why a JSON text (keys, strings, everything) looks like it holds media, or None."""
    if b"\\" in raw:
        try:
            text = _unescape(raw.decode("utf-8", errors="surrogatepass"))
            raw = text.encode("utf-8", errors="surrogatepass")
        except UnicodeError:
            return None  # not text: the decoder refuses it for that
    return _scan(raw)


def embedded_media(value: str) -> str | None:
    """Say why `value` looks like embedded media (an encoded or raw image or video), or None."""
    return _scan(b'"' + value.encode("utf-8", errors="surrogatepass"))
