"""Decoding of raw Kafka values into contract models, or a reason for refusing them. Pure.

One strict decoder for every topic. In order, a message is refused when it is over the size cap
(before anything is parsed), not UTF-8, not strict JSON (duplicate keys at any depth, lone
surrogates, NaN or Infinity, nesting past the parser's limit), holds what looks like embedded
media anywhere (keys included: one pass over the whole text, `schemas.media`), has another
`schema_version`, or does not validate against its contract. Each refusal has a stable reason
code, and a refusal holds nothing the sender chose: the paths of contract fields only (an
unknown field is `<unknown>`), and messages that quote no input.
"""

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from types import UnionType
from typing import Any, TypeVar, get_args, get_origin
from uuid import UUID

import jiter
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from schemas.media import embedded_media, media_in_json
from schemas.referral import RejectionReason, ValidationProblem

M = TypeVar("M", bound=BaseModel)

MAX_DEPTH = 8
"""The deepest nesting a contract needs (a flag's content hashes sit at depth 4)."""

UNKNOWN = "<unknown>"
"""Stands in a refusal's path for a name that is not a contract field: the sender's text."""


@cache
def contract_fields(model: type[BaseModel]) -> frozenset[str]:
    """Every field name of a contract and of the models it nests."""
    names: set[str] = set()
    pending: list[Any] = [model]
    seen: set[Any] = set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            names.update(current.model_fields)
            pending.extend(f.annotation for f in current.model_fields.values())
        elif get_origin(current) is not None or isinstance(current, UnionType):
            pending.extend(get_args(current))
    return frozenset(names)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a message was refused, with what can be said of it without keeping its bytes."""

    reason: RejectionReason
    errors: tuple[ValidationProblem, ...]
    size: int
    sha256: str
    flag_id: UUID | None


def _readable_flag_id(document: Any) -> UUID | None:
    if isinstance(document, dict):
        try:
            return UUID(str(document.get("flag_id")))
        except ValueError:
            return None
    return None


def _depth(document: Any) -> int:
    """How deep a parsed document nests (iterative: a deep one cannot exhaust the stack)."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(document, 0)]
    while pending:
        node, depth = pending.pop()
        deepest = max(deepest, depth)
        if isinstance(node, dict):
            pending.extend((value, depth + 1) for value in node.values())
        elif isinstance(node, list):
            pending.extend((value, depth + 1) for value in node)
    return deepest


def _strings(document: Any, known: frozenset[str]) -> Iterator[tuple[list[str | int], str]]:
    """Every string of a document, keys included, with a path that names contract fields only."""
    pending: list[tuple[Any, list[str | int]]] = [(document, [])]
    while pending:
        node, loc = pending.pop()
        if isinstance(node, str):
            yield loc, node
        elif isinstance(node, dict):
            for key, value in node.items():
                name = key if key in known else UNKNOWN
                pending.append((key, [*loc[:15], name]))
                pending.append((value, [*loc[:15], name]))
        elif isinstance(node, list):
            pending.extend((value, [*loc[:15], index]) for index, value in enumerate(node))


def _safe_loc(error: ErrorDetails, known: frozenset[str]) -> list[str | int]:
    return [part if isinstance(part, int) or part in known else UNKNOWN for part in error["loc"]][
        :16
    ]


_SAFE_MESSAGES = frozenset(
    {
        "missing",
        "extra_forbidden",
        "string_pattern_mismatch",
        "string_too_short",
        "string_too_long",
        "too_short",
        "too_long",
        "literal_error",
        "enum",
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
        "value_error",
        "timezone_aware",
        "string_type",
        "int_type",
        "float_type",
        "bool_type",
        "dict_type",
        "list_type",
        "model_type",
        "model_attributes_type",
        "datetime_type",
        "uuid_type",
        "ip_any_address",
        "ip_address",
    }
)
"""Error types whose pydantic message quotes nothing of the input (the contract's own words,
or ours). Any other type is said in general: some (a UUID's, a number's, a date's parsing)
quote a character or a fragment of what was sent."""


def _safe_msg(error: ErrorDetails) -> str:
    if error["type"] in _SAFE_MESSAGES:
        return error["msg"][:512]
    return f"the value does not fit the contract ({error['type'][:64]})"


def _problems(error: ValidationError, known: frozenset[str]) -> tuple[ValidationProblem, ...]:
    # Never copy `input` or `ctx` from pydantic's errors: they may hold the payload.
    return tuple(
        ValidationProblem(loc=_safe_loc(e, known), type=e["type"][:64], msg=_safe_msg(e))
        for e in error.errors(include_input=False, include_url=False)[:32]
    )


_PARSE_REASONS = {
    "Detected duplicate key": (RejectionReason.DUPLICATE_KEY, "a key appears twice in an object"),
    "recursion limit exceeded": (RejectionReason.TOO_DEEP, "the document nests too deep"),
    "surrogate": (RejectionReason.INVALID_TEXT, "a string holds a lone UTF-16 surrogate"),
    "hex escape": (RejectionReason.INVALID_TEXT, "a string holds a broken \\u escape"),
    "unicode code point": (RejectionReason.INVALID_TEXT, "a string is not valid Unicode"),
}


def _refusal(
    raw: bytes,
    reason: RejectionReason,
    msg: str,
    flag_id: UUID | None = None,
    loc: list[str | int] | None = None,
) -> Refusal:
    problem = ValidationProblem(loc=loc or [], type=reason.value, msg=msg)
    return Refusal(reason, (problem,), len(raw), hashlib.sha256(raw).hexdigest(), flag_id)


def _unparsable(raw: bytes, exc: ValueError) -> Refusal:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return _refusal(raw, RejectionReason.INVALID_TEXT, "the message is not UTF-8 text")
    for marker, (reason, said) in _PARSE_REASONS.items():
        if marker in str(exc):
            return _refusal(raw, reason, said)
    return _refusal(raw, RejectionReason.INVALID_JSON, "not a strict JSON document")


def _media_refusal(raw: bytes, document: Any, known: frozenset[str], why: str) -> Refusal:
    where = next((loc for loc, text in _strings(document, known) if embedded_media(text)), [])
    return _refusal(
        raw,
        RejectionReason.EMBEDDED_MEDIA,
        f"looks like embedded media ({why})",
        _readable_flag_id(document),
        where,
    )


def _invalid(raw: bytes, document: Any, known: frozenset[str], exc: ValidationError) -> Refusal:
    flag_id = _readable_flag_id(document)
    if _depth(document) > MAX_DEPTH:
        return _refusal(
            raw, RejectionReason.TOO_DEEP, f"nests deeper than {MAX_DEPTH} levels", flag_id
        )
    problems = _problems(exc, known)
    return Refusal(
        RejectionReason.INVALID, problems, len(raw), hashlib.sha256(raw).hexdigest(), flag_id
    )


def decode(raw: bytes | None, model: type[M], *, max_bytes: int, version: int = 1) -> M | Refusal:
    """Parse and validate one message value; return the model or a `Refusal` saying why not."""
    raw = raw or b""
    size = len(raw)
    if size > max_bytes:
        return _refusal(
            raw, RejectionReason.OVERSIZED, f"message is {size} bytes; the cap is {max_bytes}"
        )
    try:
        document = jiter.from_json(raw, allow_inf_nan=False, catch_duplicate_keys=True)
    except ValueError as exc:
        return _unparsable(raw, exc)
    # The whole text, each string on its own, keys included, JSON escapes undone.
    media = media_in_json(raw)
    if media is not None:
        return _media_refusal(raw, document, contract_fields(model), media)
    if not isinstance(document, dict):
        return _refusal(raw, RejectionReason.INVALID_JSON, "the document is not a JSON object")
    seen = document.get("schema_version")
    if type(seen) is not int or seen != version:
        # Echo an integer version; of anything else only its type, never its text.
        shown = str(seen) if type(seen) is int and abs(seen) < 10**9 else type(seen).__name__
        return _refusal(
            raw,
            RejectionReason.UNKNOWN_SCHEMA_VERSION,
            f"schema_version {shown} is not supported; expected {version}",
            _readable_flag_id(document),
            ["schema_version"],
        )
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        return _invalid(raw, document, contract_fields(model), exc)


def flag_id_in(raw: bytes | None) -> UUID | None:
    """The flag id of a message that was valid but could not be processed, when readable."""
    try:
        return _readable_flag_id(jiter.from_json(raw or b""))
    except ValueError:
        return None


def unprocessable(raw: bytes | None, flag_id: UUID | None, error: str) -> Refusal:
    """A refusal for a valid message that processing failed on; names only the error type."""
    return refused(raw, flag_id, RejectionReason.UNPROCESSABLE, f"processing failed: {error}")


def refused(raw: bytes | None, flag_id: UUID | None, reason: RejectionReason, msg: str) -> Refusal:
    """A refusal of a valid message by a rule of the service (`msg` names no value of it)."""
    raw = raw or b""
    problem = ValidationProblem(loc=[], type=reason.value, msg=msg)
    return Refusal(reason, (problem,), len(raw), hashlib.sha256(raw).hexdigest(), flag_id)
