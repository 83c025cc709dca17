"""`embedded_media`: strings that carry images or video are spotted; metadata is left alone."""

import base64
import random
import uuid
from collections.abc import Callable

import pytest

from schemas.media import embedded_media
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


@pytest.mark.parametrize("prefix", ["abc", "abcd", "x/", "photo_"])
def test_base64_media_header_is_detected_after_glued_letters(prefix: str) -> None:
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
