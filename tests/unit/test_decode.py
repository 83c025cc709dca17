"""`decode`: a flag is the model or a `Refusal` saying why, never a copy of what was refused."""

import base64
import hashlib
import json
import sys
from typing import Any
from uuid import UUID

import pytest

from schemas.flag import ModerationFlag
from schemas.referral import RejectionReason
from services.pipeline.decode import Refusal, decode
from tests.factories import flag_document, signal

MAX_BYTES = 256 * 1024
MARKER = "QZXMARKERXZQ"
"""A distinctive string placed in offending values: it must never come back in a refusal."""
PNG_B64 = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(16)).decode()


def _raw(document: Any) -> bytes:
    return json.dumps(document).encode()


def _refuse(raw: bytes | None, max_bytes: int = MAX_BYTES) -> Refusal:
    result = decode(raw, ModerationFlag, max_bytes=max_bytes)
    assert isinstance(result, Refusal), f"accepted: {result!r}"
    return result


def _errors_text(refusal: Refusal) -> str:
    dumped = json.dumps([problem.model_dump(mode="json") for problem in refusal.errors])
    return dumped + repr(refusal.errors) + repr(refusal)


def _with_subject(**fields: Any) -> dict[str, Any]:
    return flag_document(subject={"account_id": "acct-test-1", **fields})


def test_valid_document_decodes_to_the_model() -> None:
    document = flag_document()
    result = decode(_raw(document), ModerationFlag, max_bytes=MAX_BYTES)
    assert result == ModerationFlag.model_validate(document)


def test_message_at_the_cap_is_read_and_one_byte_more_is_oversized() -> None:
    raw = _raw(flag_document())
    assert isinstance(decode(raw, ModerationFlag, max_bytes=len(raw)), ModerationFlag)
    refusal = _refuse(raw, max_bytes=len(raw) - 1)
    assert refusal.reason is RejectionReason.OVERSIZED
    assert refusal.flag_id is None


@pytest.mark.parametrize(
    "raw",
    [
        None,
        b"",
        b"not json",
        b'{"schema_version": 1, "flag_id": ',
        b"[]",
        b"[1, 2, 3]",
        b'"a string"',
        b"42",
    ],
    ids=[
        "none",
        "empty",
        "text",
        "truncated",
        "empty-array",
        "array",
        "string",
        "number",
    ],
)
def test_invalid_json_is_refused(raw: bytes | None) -> None:
    refusal = _refuse(raw)
    assert refusal.reason is RejectionReason.INVALID_JSON
    assert refusal.flag_id is None


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_utf16_or_utf32_document_is_refused(encoding: str) -> None:
    raw = json.dumps(flag_document()).encode(encoding)
    assert _refuse(raw).reason in (RejectionReason.INVALID_JSON, RejectionReason.INVALID_TEXT)


@pytest.mark.parametrize(
    "raw",
    [b'{"schema_version": 1, "username": "caf\xe9"}', b"\xff\xfe\xfd"],
    ids=["latin-1", "not-utf8"],
)
def test_text_that_is_not_utf8_is_refused_as_such(raw: bytes) -> None:
    assert _refuse(raw).reason is RejectionReason.INVALID_TEXT


def test_integer_too_long_to_parse_is_refused_not_raised() -> None:
    raw = b'{"schema_version": 1, "n": ' + b"7" * 5000 + b"}"
    assert _refuse(raw).reason is RejectionReason.INVALID_JSON


def test_deeply_nested_array_is_refused_without_crashing() -> None:
    raw = b"[" * 100_000
    assert _refuse(raw).reason is RejectionReason.TOO_DEEP


def test_nesting_at_any_depth_is_refused_without_crashing() -> None:
    # The depth json.loads still accepts depends on the caller's stack: try every depth near it.
    limit = sys.getrecursionlimit()
    crashed: list[int] = []
    for depth in range(limit - 200, limit + 10):
        raw = b'{"a":' * depth + b'"leaf-value-long-enough-to-scan"' + b"}" * depth
        try:
            result = decode(raw, ModerationFlag, max_bytes=MAX_BYTES)
        except RecursionError:
            crashed.append(depth)
            continue
        assert isinstance(result, Refusal)
    assert crashed == []


@pytest.mark.parametrize(
    "version",
    [2, 0, "1", None, 1.5, [1], {"v": 1}],
    ids=["2", "0", "string-1", "null", "float", "list", "object"],
)
def test_unknown_schema_version_is_refused(version: object) -> None:
    document = flag_document(schema_version=version)
    refusal = _refuse(_raw(document))
    assert refusal.reason is RejectionReason.UNKNOWN_SCHEMA_VERSION
    assert refusal.errors[0].loc == ["schema_version"]
    assert refusal.flag_id == UUID(document["flag_id"])


def test_missing_schema_version_is_refused() -> None:
    document = flag_document()
    del document["schema_version"]
    refusal = _refuse(_raw(document))
    assert refusal.reason is RejectionReason.UNKNOWN_SCHEMA_VERSION
    assert refusal.flag_id == UUID(document["flag_id"])


@pytest.mark.parametrize(
    ("document", "loc"),
    [
        (_with_subject(username=f"data:image/png;base64,{PNG_B64}"), ["subject", "username"]),
        (_with_subject(username=f"photo {PNG_B64}"), ["subject", "username"]),
        (flag_document(attachment=PNG_B64), ["<unknown>"]),
        (flag_document(extra={"nested": [PNG_B64]}), ["<unknown>", "<unknown>", 0]),
        (flag_document(**{PNG_B64: "x"}), ["<unknown>"]),
        (flag_document(subject={"account_id": "a", PNG_B64: 1}), ["subject", "<unknown>"]),
    ],
    ids=["data-uri", "base64-in-text", "extra-field", "nested-extra", "top-key", "nested-key"],
)
def test_embedded_media_is_refused_wherever_it_is(
    document: dict[str, Any], loc: list[str | int]
) -> None:
    refusal = _refuse(_raw(document))
    assert refusal.reason is RejectionReason.EMBEDDED_MEDIA
    assert refusal.errors[0].loc == loc
    assert refusal.flag_id == UUID(document["flag_id"])


def test_embedded_media_in_a_json_array_is_refused() -> None:
    assert _refuse(_raw([PNG_B64])).reason is RejectionReason.EMBEDDED_MEDIA


def _without(key: str) -> dict[str, Any]:
    document = flag_document()
    del document[key]
    return document


@pytest.mark.parametrize(
    ("document", "loc"),
    [
        (_without("subject"), ("subject",)),
        (_without("signals"), ("signals",)),
        (_without("detected_at"), ("detected_at",)),
        (flag_document(message_text="free text"), ("<unknown>",)),
        (flag_document(signals=[signal(confidence=1.01)]), ("signals", 0, "confidence")),
        (flag_document(signals=[signal(confidence=-0.01)]), ("signals", 0, "confidence")),
        (flag_document(signals=[]), ("signals",)),
        (flag_document(detected_at="2026-11-26T09:00:00"), ("detected_at",)),
    ],
    ids=[
        "missing-subject",
        "missing-signals",
        "missing-detected-at",
        "extra-field",
        "confidence-above-1",
        "confidence-below-0",
        "no-signals",
        "naive-datetime",
    ],
)
def test_invalid_document_is_refused_with_where(
    document: dict[str, Any], loc: tuple[str | int, ...]
) -> None:
    refusal = _refuse(_raw(document))
    assert refusal.reason is RejectionReason.INVALID
    assert tuple(refusal.errors[0].loc) == loc
    assert refusal.flag_id == UUID(document["flag_id"])


@pytest.mark.parametrize("flag_id", ["not-a-uuid", None, 12])
def test_unreadable_flag_id_is_reported_as_none(flag_id: object) -> None:
    refusal = _refuse(_raw(flag_document(flag_id=flag_id)))
    assert refusal.reason is RejectionReason.INVALID
    assert refusal.flag_id is None


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        _raw(flag_document(signals=[signal(confidence=2.0)])),
        _raw(flag_document(schema_version=9)),
        b"x" * 2000,
    ],
)
def test_refusal_reports_size_and_sha256_of_the_bytes(raw: bytes) -> None:
    refusal = _refuse(raw, max_bytes=1000)
    assert refusal.size == len(raw)
    assert refusal.sha256 == hashlib.sha256(raw).hexdigest()


def _marked(**overrides: Any) -> bytes:
    return _raw(flag_document(**overrides))


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"note": "' + MARKER.encode() * 30_000 + b'"}', id="oversized"),
        pytest.param(b'{"note": "' + MARKER.encode() + b'"', id="invalid-json"),
        pytest.param(b'{"note": "' + MARKER.encode() + b'\xff"}', id="not-utf8"),
        pytest.param(_raw([MARKER]), id="array"),
        pytest.param(
            _raw(_with_subject(username=f"{MARKER} data:image/png;base64,{PNG_B64}")),
            id="media-in-username",
        ),
        pytest.param(_marked(note=f"{MARKER} {PNG_B64}"), id="media-in-extra-field"),
        pytest.param(_marked(message_text=MARKER), id="extra-field-value"),
        pytest.param(_marked(flag_id=MARKER), id="flag-id"),
        pytest.param(_marked(detected_at=MARKER), id="detected-at"),
        pytest.param(_marked(signals=[{**signal(), "confidence": MARKER}]), id="confidence"),
        pytest.param(_marked(signals=[signal(category=MARKER)]), id="category"),
        pytest.param(_marked(signals=[signal(label=MARKER)]), id="label"),
        pytest.param(_raw(_with_subject(ips=[MARKER])), id="ip"),
        pytest.param(_raw(_with_subject(country=MARKER)), id="country"),
        pytest.param(_raw(_with_subject(account_id=f"{MARKER} !")), id="account-id"),
        pytest.param(_raw(_with_subject(username=MARKER * 30)), id="username-too-long"),
        pytest.param(
            _marked(content=[{"content_id": "c-1", "media_type": "image", "url": MARKER}]),
            id="url",
        ),
        pytest.param(
            _marked(schema_version=MARKER),
            id="schema-version",
        ),
    ],
)
def test_refusal_errors_never_repeat_the_offending_value(raw: bytes) -> None:
    refusal = _refuse(raw)
    assert MARKER not in _errors_text(refusal)
    assert MARKER[:6] not in _errors_text(refusal)
