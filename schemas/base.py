"""The base of every contract model and the bounded field types they share."""

from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

# Embedded media is refused where messages enter, by the decoder, in one pass over the whole
# text (keys included, every encoding: `schemas.media`), not by a validator per field.


PRINTABLE = r"[^\x00-\x1f\x7f-\x9f]"
"""A character that is not a control character (C0, DEL or C1). PostgreSQL cannot store U+0000,
and no control character belongs in a packet read down the phone: contracts refuse them all."""


def _bounded(max_length: int, pattern: str | None = None) -> object:
    return StringConstraints(min_length=1, max_length=max_length, pattern=pattern)


Identifier = Annotated[str, _bounded(128, r"^[A-Za-z0-9][A-Za-z0-9_.:@/+=-]*$")]
"""An opaque identifier issued by a platform or a classifier (account ids, content ids)."""

Label = Annotated[str, _bounded(64, r"^[a-z0-9][a-z0-9_.:-]*$")]
"""A machine label such as a classifier class or a hash-list name."""

ShortText = Annotated[str, _bounded(256, f"^{PRINTABLE}+$")]
"""A short human-readable value (a username, a service name); never free text about content."""

Url = Annotated[str, _bounded(2048, r"^https?://[^\s\x00-\x1f\x7f-\x9f]+$")]


def _iso_country(value: str) -> str:
    # "UK" is reserved in ISO 3166-1 for the United Kingdom, whose code is GB: a UK platform that
    # sends "UK" must still reach UK police, not be routed abroad.
    return "GB" if value == "UK" else value


CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$"), AfterValidator(_iso_country)]
"""ISO 3166-1 alpha-2, upper case ("UK" is read as "GB")."""


EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC) - timedelta(days=366)
"""Bounds every deadline computed from a timestamp can still represent (checked natively)."""

Timestamp = Annotated[AwareDatetime, Field(ge=EARLIEST, lt=LATEST)]
"""A timezone-aware instant in a range every deadline computed from it can represent."""

PostcodeDistrict = Annotated[str, StringConstraints(pattern=r"^[A-Z]{1,2}[0-9][0-9A-Z]?$")]
"""The outward code of a UK postcode (e.g. `M1`, `SW1A`), never a full postcode."""

HexDigest = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]+$", max_length=128)]


class Contract(BaseModel):
    """A versioned message or document: frozen, closed to unknown fields, bounded."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)
