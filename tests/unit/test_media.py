"""`embedded_media`: strings that carry images or video are spotted; metadata is left alone."""

import base64
import json
import random
import string
import uuid
from collections.abc import Callable
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.media import embedded_media, media_in_json
from tests.factories import synthetic_hash

# Magic numbers followed by zero padding: enough header for the detector, no real content.
HEADERS: dict[str, bytes] = {
    "jpeg": b"\xff\xd8\xff\xe0" + bytes(20),
    "png": b"\x89PNG\r\n\x1a\n" + bytes(16),
    "gif87a": b"GIF87a" + bytes(18),
    "gif89a": b"GIF89a" + bytes(18),
    "webp": b"RIFF" + bytes(4) + b"WEBPVP8 " + bytes(12),
    "mp4": b"\x00\x00\x00\x18ftypmp42" + bytes(12),
}
KINDS = {"gif87a": "gif", "gif89a": "gif"}


def _b64(header: bytes) -> str:
    return base64.b64encode(header).decode()


def _b64_urlsafe(header: bytes) -> str:
    return base64.urlsafe_b64encode(header).decode()


@pytest.mark.parametrize("name", sorted(HEADERS))
@pytest.mark.parametrize("encode", [_b64, _b64_urlsafe], ids=["standard", "urlsafe"])
def test_base64_media_header_is_detected(name: str, encode: Callable[[bytes], str]) -> None:
    value = encode(HEADERS[name])
    assert embedded_media(value) == f"base64 {KINDS.get(name, name)}"


@pytest.mark.parametrize("name", sorted(HEADERS))
@pytest.mark.parametrize("template", ["see {} here", "caption: {}", "{}\nnext line", "x={}=="])
def test_base64_media_header_is_detected_inside_a_longer_string(name: str, template: str) -> None:
    value = template.format(_b64(HEADERS[name]))
    assert embedded_media(value) == f"base64 {KINDS.get(name, name)}"


@pytest.mark.parametrize("prefix", ["photo_", "x=", "see ", "img:", "https://x.example/?p="])
def test_base64_media_header_is_detected_after_text_that_is_not_base64(prefix: str) -> None:
    assert embedded_media(prefix + _b64(HEADERS["jpeg"])) == "base64 jpeg"


@pytest.mark.parametrize(
    "value",
    [
        "data:image/png;base64,iVBORw0KGgo",
        "DATA:IMAGE/JPEG;BASE64,/9j/4AAQ",
        "data:video/mp4,xyz",
        "data:;base64,AAAA",
        "before data:image/gif;base64,R0lGODlh after",
    ],
)
def test_data_uri_is_detected(value: str) -> None:
    assert embedded_media(value) == "data URI"


@pytest.mark.parametrize("name", sorted(HEADERS))
def test_raw_header_bytes_as_latin1_chars_are_detected(name: str) -> None:
    value = HEADERS[name].decode("latin-1")
    assert embedded_media(value) == f"raw {KINDS.get(name, name)} bytes"


HASH_ALGORITHMS = ["md5", "sha1", "sha256"]


@pytest.mark.parametrize("seed", [f"seed-{n}" for n in range(16)])
@pytest.mark.parametrize("algorithm", HASH_ALGORITHMS)
def test_hex_digests_are_not_media(seed: str, algorithm: str) -> None:
    assert embedded_media(synthetic_hash(seed, algorithm)) is None


@pytest.mark.parametrize("seed", [f"pdq-{n}" for n in range(16)])
def test_pdq_hashes_are_not_media(seed: str) -> None:
    # A PDQ hash is 256 bits written as 64 hex digits, like a SHA-256.
    assert embedded_media(synthetic_hash(seed)) is None


@pytest.mark.parametrize(
    "value",
    [
        "https://cdn.example.org/media/iioc",
        "https://www.example.org/a/b/c?id=0123456789abcdef0123456789abcdef&page=2",
        "https://www.avonandsomerset.police.uk",
        "https://report.iwf.org.uk/org/reports/ABCDEFGHIJKLMNOPQRSTUVWXYZ012345",
        str(uuid.UUID(int=0)),
        str(uuid.UUID("4ecf4662-612b-56aa-9c63-07631d72db51")),
        *(str(uuid.UUID(int=random.Random(seed).getrandbits(128))) for seed in range(20)),
        "acct-test-0a1b2c3d",
        "acct-sample-coercion",
        "content-test-1",
        "msg-sample-grooming",
        "sample_user_grooming",
        "test_classifier_v2.3.1",
        "urn:example:account:1234567890",
        "JohnSmith1987",
        "the_quick_brown_fox_jumps_over_the_lazy_dog",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
        "",
    ],
)
def test_ordinary_metadata_is_not_media(value: str) -> None:
    assert embedded_media(value) is None


@pytest.mark.parametrize("username", ["thriftypanda", "thriftypete"])
def test_usernames_with_ftyp_inside_are_not_media(username: str) -> None:
    assert embedded_media(username) is None


@pytest.mark.parametrize("seed", range(32))
@pytest.mark.parametrize("encode", [_b64, _b64_urlsafe], ids=["standard", "urlsafe"])
def test_base64_of_random_non_media_bytes_is_not_media(
    seed: int, encode: Callable[[bytes], str]
) -> None:
    data = random.Random(seed).randbytes(48)
    # Keep the random bytes honest: none starts like a supported media format.
    assert not data.startswith((b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"RIFF"))
    assert data[4:8] != b"ftyp"
    assert embedded_media(encode(data)) is None


# --- every encoding, at any alignment (property tests) -------------------------------------------

ALL_KINDS: dict[str, bytes] = {
    **HEADERS,
    "bmp": b"BM" + bytes([0x36, 0x10, 0x0E, 0x00]) + bytes(4) + b"\x36\x00\x00\x00",
    "tiff": b"II*\x00\x08\x00\x00\x00",
    "tiff-be": b"MM\x00*\x00\x00\x00\x08",
    "heic": b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00",
    "avif": b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00",
    "mov": b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00",
    "webm": bytes.fromhex("1a45dfa39f4286810142f7810142f2"),
    "avi": b"RIFF\x24\x10\x00\x00AVI LIST",
    "jpeg-exif": b"\xff\xd8\xff\xe1\x00\x18Exif\x00\x00",
    "jpeg-dqt": b"\xff\xd8\xff\xdb\x00\x43\x00\x08",
}


def _lines(data: bytes) -> str:
    encoded = base64.b64encode(data).decode()
    return "\n".join(encoded[i : i + 7] for i in range(0, len(encoded), 7))


ENCODINGS: dict[str, Callable[[bytes], str]] = {
    "base64": lambda data: base64.b64encode(data).decode(),
    "base64-urlsafe": lambda data: base64.urlsafe_b64encode(data).decode(),
    "base64-lines": _lines,
    "hex": lambda data: data.hex(),
    "HEX": lambda data: data.hex().upper(),
    "percent": lambda data: "".join(f"%{byte:02X}" for byte in data),
    "percent-base64": lambda data: quote(base64.b64encode(data).decode(), safe=""),
    "data-uri": lambda data: "data:image/png;base64," + base64.b64encode(data).decode(),
    "percent-data-uri": lambda data: quote(
        "data:image/png;base64," + base64.b64encode(data).decode(), safe=""
    ),
    "raw": lambda data: data.decode("latin-1"),
}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(sorted(ALL_KINDS)),
    encoding=st.sampled_from(sorted(ENCODINGS)),
    offset=st.binary(max_size=2),
    tail=st.binary(min_size=40, max_size=64),  # hex counts only in runs longer than digests
    before=st.sampled_from(["", "https://cdn.example.org/p?img=", "photo ", "x="]),
)
def test_media_is_found_in_every_encoding_at_any_alignment(
    kind: str, encoding: str, offset: bytes, tail: bytes, before: str
) -> None:
    """A file's header, starting zero to two bytes into the encoded data, behind ordinary text."""
    value = before + ENCODINGS[encoding](offset + ALL_KINDS[kind] + tail)
    assert embedded_media(value) is not None, (kind, encoding, value)
    document = json.dumps({"username": value}).encode()
    assert media_in_json(document) is not None, "found in a JSON text too, escapes undone"


def test_base64_only_matches_where_a_run_starts() -> None:
    """Random base64 (a PhotoDNA hash, a URL's token) holds any short sequence somewhere, by
    chance: a signature counts only where a run of base64 starts, as an encoded file does."""
    jpeg = base64.b64encode(ALL_KINDS["jpeg"]).decode()
    assert embedded_media(jpeg) == "base64 jpeg"
    assert embedded_media("QUJD" + jpeg) is None, "three bytes in: not a file's encoding"
    assert embedded_media("https://lh3.example.com/a/ACg8ocKx/9j/4kQ=s96-c") is None
    assert embedded_media("https://video.example/watch?v=b/2P/hello") is None


# --- the false-positive rate on ordinary metadata -----------------------------------------------

CORPUS_SIZE = 20_000
"""Per kind of value; the rate below is counted over all of them (140,000 values)."""


def _corpus(rng: random.Random) -> dict[str, list[str]]:
    alphabet = string.ascii_letters + string.digits
    words = ["blue", "fox", "river", "stone", "moon", "kite", "jade", "otter", "maple", "north"]
    return {
        "sha256 hex": [rng.randbytes(32).hex() for _ in range(CORPUS_SIZE)],
        "pdq hex": [rng.randbytes(32).hex() for _ in range(CORPUS_SIZE)],
        "uuid": [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(CORPUS_SIZE)],
        "photodna base64": [
            base64.b64encode(rng.randbytes(144)).decode() for _ in range(CORPUS_SIZE)
        ],
        "base64url token": [
            base64.urlsafe_b64encode(rng.randbytes(rng.randint(12, 32))).decode().rstrip("=")
            for _ in range(CORPUS_SIZE)
        ],
        "username": [
            rng.choice(words)
            + rng.choice(["_", ".", ""])
            + rng.choice(words)
            + str(rng.randint(0, 9999))
            for _ in range(CORPUS_SIZE)
        ],
        "url": [
            "https://cdn.example.org/"
            + "/".join(
                "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
                for _ in range(rng.randint(1, 5))
            )
            + rng.choice(["", ".jpg", ".mp4", "?v=" + str(rng.randint(0, 99))])
            for _ in range(CORPUS_SIZE)
        ],
    }


def test_no_ordinary_metadata_in_a_seeded_corpus_is_taken_for_media() -> None:
    corpus = _corpus(random.Random(20261202))
    flagged = {kind: [v for v in values if embedded_media(v)] for kind, values in corpus.items()}
    assert flagged["sha256 hex"] == [], "digests are never media"
    assert flagged["pdq hex"] == [], "digests are never media"
    assert {kind: values for kind, values in flagged.items() if values} == {}
