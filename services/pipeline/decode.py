"""Decoding of raw Kafka values into contract models, or a reason for refusing them. Pure."""

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from schemas.media import embedded_media
from schemas.referral import RejectionReason, ValidationProblem

M = TypeVar("M", bound=BaseModel)

_MEDIA_MARK = "looks like embedded media"
_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


def _find_media(document: Any) -> tuple[list[str | int], str] | None:
    """Walk a JSON document, keys included, for the first string that looks like media.

    Iterative, so a deeply nested document cannot exhaust the stack.
    """
    pending: list[tuple[Any, list[str | int]]] = [(document, [])]
    while pending:
        node, loc = pending.pop()
        if isinstance(node, str):
            reason = embedded_media(node)
            if reason is not None:
                return loc, reason
        elif isinstance(node, dict):
            for key, value in node.items():
                pending.append((key, [*loc[:15], "<key>"]))
                pending.append((value, [*loc[:15], _field_name(key)]))
        elif isinstance(node, list):
            pending.extend((value, [*loc[:15], index]) for index, value in enumerate(node))
    return None


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


def _field_name(key: Any) -> str:
    """A key as it may appear in a DLQ record: a field-like name, else a placeholder.

    Keys are the sender's text; only short snake_case names (the contracts' own kind) are kept.
    """
    return key if isinstance(key, str) and _FIELD_NAME.fullmatch(key) else "<key>"


def _safe_loc(error: ErrorDetails) -> list[str | int]:
    """The error's location with sender-chosen names replaced (an extra field is `<extra>`)."""
    loc = list(error["loc"])
    if error["type"] == "extra_forbidden" and loc:
        loc[-1] = "<extra>"
    return [
        part if isinstance(part, int) or part == "<extra>" else _field_name(part) for part in loc
    ]


def _problems(error: ValidationError) -> tuple[ValidationProblem, ...]:
    # Never copy `input` or `ctx` from pydantic's errors: they may hold the payload.
    return tuple(
        ValidationProblem(loc=_safe_loc(e)[:16], type=e["type"][:64], msg=e["msg"][:512])
        for e in error.errors(include_input=False, include_url=False)[:32]
    )


def decode(raw: bytes | None, model: type[M], *, max_bytes: int, version: int = 1) -> M | Refusal:
    """Parse and validate one message value; return the model or a `Refusal` saying why not."""
    raw = raw or b""
    size = len(raw)
    digest = hashlib.sha256(raw).hexdigest()

    def refuse(
        reason: RejectionReason,
        msg: str,
        flag_id: UUID | None = None,
        loc: list[str | int] | None = None,
    ) -> Refusal:
        problem = ValidationProblem(loc=loc or [], type=reason.value, msg=msg)
        return Refusal(reason, (problem,), size, digest, flag_id)

    if size > max_bytes:
        return refuse(RejectionReason.OVERSIZED, f"message is {size} bytes; the cap is {max_bytes}")
    try:
        # UTF-8 only, as JSON on the wire must be; json.loads(bytes) would also take UTF-16/32.
        # ValueError covers malformed JSON and integers past Python's digit limit.
        document = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        return refuse(RejectionReason.INVALID_JSON, f"not a JSON document: {type(exc).__name__}")
    flag_id = _readable_flag_id(document)
    media = _find_media(document)
    if media is not None:
        loc, why = media
        return refuse(RejectionReason.EMBEDDED_MEDIA, f"{_MEDIA_MARK} ({why})", flag_id, loc[:16])
    if not isinstance(document, dict):
        return refuse(RejectionReason.INVALID_JSON, "the document is not a JSON object")
    seen = document.get("schema_version")
    if type(seen) is not int or seen != version:
        # Echo an integer version; of anything else only its type, never its text.
        shown = str(seen) if type(seen) is int and abs(seen) < 10**9 else type(seen).__name__
        return refuse(
            RejectionReason.UNKNOWN_SCHEMA_VERSION,
            f"schema_version {shown} is not supported; expected {version}",
            flag_id,
            ["schema_version"],
        )
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        problems = _problems(exc)
        has_media = any(_MEDIA_MARK in p.msg for p in problems)
        reason = RejectionReason.EMBEDDED_MEDIA if has_media else RejectionReason.INVALID
        return Refusal(reason, problems, size, digest, flag_id)


def decode_internal(raw: bytes | None, model: type[M], *, max_bytes: int) -> M | Refusal:
    """`decode` for the pipeline's own topics (tasks, decisions), at a tenth of its cost.

    The contract is validated straight from the JSON text by pydantic's parser. Its validators
    refuse embedded media in every field that could hold it, so the walk of `decode` is needed
    only to say why a message is refused: a message refused here goes through `decode`.
    """
    if raw is None or len(raw) > max_bytes:
        return decode(raw, model, max_bytes=max_bytes)
    try:
        return model.model_validate_json(raw)
    except ValidationError:
        return decode(raw, model, max_bytes=max_bytes)


def flag_id_in(raw: bytes | None) -> UUID | None:
    """The flag id of a message that was valid but could not be processed, when readable."""
    try:
        return _readable_flag_id(json.loads(raw or b""))
    except (ValueError, RecursionError):
        return None


def unprocessable(raw: bytes | None, flag_id: UUID | None, error: str) -> Refusal:
    """A refusal for a valid message that processing failed on; names only the error type."""
    raw = raw or b""
    problem = ValidationProblem(
        loc=[], type=RejectionReason.UNPROCESSABLE.value, msg=f"processing failed: {error}"
    )
    return Refusal(
        RejectionReason.UNPROCESSABLE,
        (problem,),
        len(raw),
        hashlib.sha256(raw).hexdigest(),
        flag_id,
    )
