"""What a person sends to move a case, from the API or the console: validated, and any error
described without quoting what was sent."""

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from schemas.media import embedded_media
from schemas.packets import ExternalReference
from services.referral.enums import CaseStatus
from services.referral.renderings import Format

INT32_MAX = 2**31 - 1
"""The largest packet version the database holds (a PostgreSQL `integer`)."""


def _iso_text(value: object) -> object:
    """Only an ISO 8601 date and time (pydantic alone would take `0.5` as a Unix time)."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO_DATETIME.fullmatch(value):
        raise ValueError("expected an ISO 8601 date and time with a timezone")
    return value


def _in_range(value: datetime) -> datetime:
    """A time whose UTC value Python and PostgreSQL can both hold (year 1 to 9999)."""
    try:
        value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError(
            "the time is outside the range this API holds (years 1 to 9999 UTC)"
        ) from None
    return value


_ISO_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?([Zz]|[+-]\d{2}:?\d{2})"
)
Instant = Annotated[AwareDatetime, BeforeValidator(_iso_text), AfterValidator(_in_range)]
"""A timezone-aware time from a request, within what the database holds."""


def no_media(value: str) -> str:
    reason = embedded_media(value)
    if reason is not None:
        raise ValueError(f"looks like embedded media ({reason}); this field is text only")
    return value


NOTE_TEXT = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]+$"
"""A person's note: any text but control characters (tabs and line breaks are fine)."""


class TransitionRequest(BaseModel):
    """Move a case on: `submitted` needs the receiver's reference, `dismissed` a note."""

    model_config = ConfigDict(extra="forbid")

    to: CaseStatus
    external_reference: Annotated[ExternalReference, AfterValidator(no_media)] | None = None
    packet_version: int | None = Field(default=None, ge=1, le=INT32_MAX)
    """Required for `submitted`: the packet version that was sent. When a later version exists,
    the flags it added come back at once as a supplementary packet."""
    expected_updated_at: Instant | None = None
    """The case's `updated_at` as read: the move is refused (409) if the case changed since."""
    format: Format | None = None
    """With `submitted`: the rendering that was sent (`?format=` of the packet route); by
    default `ncmec-xml` for a case to NCMEC, else `json`. The receipt keeps its sha256."""
    note: (
        Annotated[
            str,
            Field(min_length=1, max_length=1000, pattern=NOTE_TEXT),
            AfterValidator(no_media),
        ]
        | None
    ) = None


_QUOTING = {"uuid_parsing": "Input should be a valid UUID", "json_invalid": "JSON decode error"}
"""Pydantic messages that quote part of the input, and what to say instead."""


def safe_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Validation errors as location, type and message: never the input, nor a message or a
    location (an unknown field's name) that quotes it."""
    safe = []
    for error in errors:
        kind = str(error.get("type", "value_error"))
        loc = [part if isinstance(part, int) else str(part) for part in error.get("loc", ())]
        if kind == "extra_forbidden" and loc:
            loc = loc[:-1]  # the unknown field's name is the caller's text
        msg = _QUOTING.get(kind, str(error.get("msg", "invalid value")))
        given = error.get("input")
        if isinstance(given, str) and len(given) >= 3 and given in msg:
            msg = "invalid value"
        safe.append({"loc": loc, "type": kind, "msg": msg})
    return safe
