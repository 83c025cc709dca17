"""`ModerationFlag` v1: what an upstream classifier publishes on `csae.flags.v1`."""

import socket
from datetime import timedelta
from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Annotated, Literal, Self
from uuid import UUID

from pydantic import (
    Field,
    PlainSerializer,
    PlainValidator,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from schemas.base import (
    Contract,
    CountryCode,
    HexDigest,
    Identifier,
    Label,
    PostcodeDistrict,
    ShortText,
    Timestamp,
    Url,
)

FREE_TEXT_CAP = 16 * 1024
"""The most characters a flag may carry in the strings its sender chooses freely (identifiers,
the username, URLs, PhotoDNA hashes): enough for 64 content items with ordinary URLs, and a
bound on what any encoding the media check does not know could smuggle."""

MAX_CLOCK_SKEW = timedelta(minutes=5)
"""How far a source's detection clock may run ahead of its publishing clock."""


class SourceKind(StrEnum):
    HASH_MATCH = "hash_match"
    CLASSIFIER = "classifier"
    USER_REPORT = "user_report"
    MODERATOR = "moderator"


class SignalCategory(StrEnum):
    GROOMING = "grooming"
    COERCION = "coercion"
    IIOC = "iioc"
    SAFETY = "safety"
    SELF_HARM = "self_harm"
    OTHER = "other"


class MediaType(StrEnum):
    IMAGE = "image"
    VIDEO = "video"
    TEXT = "text"
    LIVESTREAM = "livestream"
    OTHER = "other"


class AgeBand(StrEnum):
    UNDER_13 = "under_13"
    AGE_13_15 = "13_15"
    AGE_16_17 = "16_17"
    UNKNOWN = "unknown"


def _ip_address(value: object) -> IPv4Address | IPv6Address:
    """An IPv4 or IPv6 address, from its text. One parse: pydantic's union of the two types
    tries each in turn, at three times the cost, and takes a number for an address."""
    if isinstance(value, IPv4Address | IPv6Address):
        return value
    if isinstance(value, str):
        try:
            # The C parser first: an IPv4 address it writes back in the same words is the one
            # `ip_address` would make, at a third of the cost. Anything else (IPv6, or a form
            # the two might read differently) is left to `ip_address`.
            packed = socket.inet_pton(socket.AF_INET, value)
            if socket.inet_ntop(socket.AF_INET, packed) == value:
                return IPv4Address(packed)
        except (OSError, ValueError, UnicodeEncodeError):
            pass
        try:
            return ip_address(value)
        except ValueError:
            pass
    # Never the input: the message reaches dead letters, which hold nothing of the sender's.
    raise PydanticCustomError("ip_address", "not an IPv4 or IPv6 address")


IpAddress = Annotated[
    IPv4Address | IPv6Address,
    PlainValidator(_ip_address),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {"anyOf": [{"format": "ipv4", "type": "string"}, {"format": "ipv6", "type": "string"}]}
    ),
]


class Source(Contract):
    """The system that raised the flag."""

    system: Label
    version: Annotated[
        str,
        StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.+-]+$"),
    ]
    kind: SourceKind


class Platform(Contract):
    """The reporting organisation and the service the content was found on."""

    org_id: Identifier
    service: Label
    country: CountryCode


class HashMatch(Contract):
    """A match of the content against a hash list."""

    list: Label
    match: Literal["exact", "perceptual"]
    distance: int | None = Field(default=None, ge=0, le=1024)
    external: bool = True
    """Whether the list is shared across platforms (e.g. the IWF list), not the platform's own."""


class Signal(Contract):
    """One finding of the source about the flagged activity."""

    category: SignalCategory
    label: Label
    confidence: float = Field(ge=0.0, le=1.0)
    immediate_danger: bool = False
    hash_match: HashMatch | None = None
    shared_externally: bool | None = None


class ContentHashes(Contract):
    md5: Annotated[HexDigest, StringConstraints(min_length=32, max_length=32)] | None = None
    sha1: Annotated[HexDigest, StringConstraints(min_length=40, max_length=40)] | None = None
    sha256: Annotated[HexDigest, StringConstraints(min_length=64, max_length=64)] | None = None
    pdq: Annotated[HexDigest, StringConstraints(min_length=64, max_length=64)] | None = None
    photodna: (
        Annotated[
            str,
            StringConstraints(min_length=1, max_length=1024, pattern=r"^[A-Za-z0-9+/=,]+$"),
        ]
        | None
    ) = None


class ContentRef(Contract):
    """A reference to a piece of content: identifiers and hashes, never the bytes."""

    content_id: Identifier
    media_type: MediaType
    url: Url | None = None
    public: bool | None = None
    """Whether the URL can be reached without an account on the platform."""
    hashes: ContentHashes = ContentHashes()
    uploaded_at: Timestamp | None = None
    uploader_ip: IpAddress | None = None


class Location(Contract):
    """Where a person is, as coarsely as routing needs: a country, a postcode district, a force."""

    country: CountryCode
    postcode_district: PostcodeDistrict | None = None
    force_id: Label | None = None


class Subject(Contract):
    """The account reported."""

    account_id: Identifier
    username: ShortText | None = None
    ips: list[IpAddress] = Field(default_factory=list, max_length=32)
    country: CountryCode | None = None
    location: Location | None = None
    """Where the reported account is, when known: the police force is chosen from it when the
    child's location is unknown."""


class Child(Contract):
    """A child at risk, when known."""

    account_id: Identifier | None = None
    age_band: AgeBand | None = None
    location: Location | None = None


class ModerationFlag(Contract):
    """A flag raised by an upstream system about suspected CSAE on a platform."""

    schema_version: Literal[1]
    flag_id: UUID
    detected_at: Timestamp
    published_at: Timestamp
    source: Source
    platform: Platform
    signals: list[Signal] = Field(min_length=1, max_length=32)
    content: list[ContentRef] = Field(default_factory=list, max_length=64)
    subject: Subject
    child: Child | None = None

    @model_validator(mode="after")
    def _detected_before_published(self) -> Self:
        if self.detected_at > self.published_at + MAX_CLOCK_SKEW:
            raise ValueError("detected_at is later than published_at")
        return self

    @model_validator(mode="after")
    def _free_text_bounded(self) -> Self:
        texts = [self.platform.org_id, self.subject.account_id, self.subject.username]
        texts += [self.child.account_id if self.child else None]
        for item in self.content:
            texts += [item.content_id, item.url, item.hashes.photodna]
        if sum(len(text) for text in texts if text) > FREE_TEXT_CAP:
            raise ValueError(
                f"the flag carries more than {FREE_TEXT_CAP} characters of free-form text"
            )
        return self
