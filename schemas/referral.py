"""`ReferralTask` and `Decision` v1: what the router emits for every flag it reads."""

from enum import StrEnum
from hashlib import sha1
from typing import Annotated, Literal, Self
from uuid import UUID

from pydantic import Field, StringConstraints, model_validator

from schemas.base import PRINTABLE, Contract, CountryCode, Label, Timestamp
from schemas.flag import ModerationFlag

TASK_NAMESPACE = UUID("6f1c2f64-3a5e-4c4b-9d7e-2b1f0c8a9e51")
_TASK_NAMESPACE_BYTES = TASK_NAMESPACE.bytes


class Criterion(StrEnum):
    """The UK reporting criteria."""

    GROOMING = "grooming"
    COERCION = "coercion"
    IIOC = "iioc"
    SAFETY = "safety"


class Priority(StrEnum):
    """P0 is immediate danger (call 999 now); P3 is the least urgent referral."""

    P0 = "P0"
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"


class Outcome(StrEnum):
    REFER = "refer"
    REVIEW = "review"
    NONE = "none"


class DestinationKind(StrEnum):
    POLICE = "police"
    IWF = "iwf"
    INTL = "intl"
    NCA = "nca"
    """The National Crime Agency: the statutory report of CSEA content under the Online
    Safety Act 2023, s.66 (`services.domain.nca`)."""


class FiredRule(Contract):
    """A policy rule that matched the flag, and why."""

    rule_id: Label
    mode: Literal["active", "shadow"]
    outcome: Literal["refer", "review"]
    priority: Priority
    criteria: list[Criterion] = Field(max_length=4)
    matched: list[
        Annotated[
            str,
            StringConstraints(max_length=128, pattern=f"^{PRINTABLE}*$"),
        ]
    ] = Field(max_length=16)
    """The conditions that held, in words (e.g. `signal[0].category == iioc`)."""


class Destination(Contract):
    """Where a referral goes: a UK police force, the IWF, another country's mechanism, or the
    NCA (the statutory report)."""

    kind: DestinationKind
    force_id: Label | None = None
    mechanism: Label | None = None
    country: CountryCode | None = None

    @model_validator(mode="after")
    def _addressed(self) -> Self:
        if self.kind is DestinationKind.POLICE and self.force_id is None:
            raise ValueError("a police destination needs a force_id")
        if self.kind is DestinationKind.INTL and (self.mechanism is None or self.country is None):
            raise ValueError("an intl destination needs a mechanism and a country")
        return self

    @property
    def key(self) -> str:
        """A stable name for the destination, e.g. `police:kent` or `intl:US:ncmec_cybertipline`."""
        match self.kind:
            case DestinationKind.POLICE:
                return f"police:{self.force_id}"
            case DestinationKind.IWF:
                return "iwf"
            case DestinationKind.NCA:
                return "nca"
            case DestinationKind.INTL:
                return f"intl:{self.country}:{self.mechanism}"


class Decision(Contract):
    """The router's decision for one flag, refer, review or none, with the rules behind it."""

    schema_version: Literal[1] = 1
    flag_id: UUID
    outcome: Outcome
    priority: Priority | None = None
    criteria: list[Criterion] = Field(default_factory=list, max_length=4)
    immediate_danger: bool = False
    rules: list[FiredRule] = Field(default_factory=list, max_length=64)
    policy_version: Label
    destinations: list[Destination] = Field(default_factory=list, max_length=8)
    detected_at: Timestamp
    decided_at: Timestamp

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.outcome is Outcome.NONE:
            if self.destinations or self.priority is not None:
                raise ValueError("a no-report decision has no destination and no priority")
        elif not self.criteria or self.priority is None or not self.destinations:
            raise ValueError(
                "a refer or review decision needs criteria, a priority and destinations"
            )
        return self


def task_id_for(
    flag_id: UUID | str, destination: Destination, escalation: str | None = None
) -> UUID:
    """The deterministic id of a flag's task for one destination: redelivery is a duplicate.
    `uuid5(TASK_NAMESPACE, f"{flag_id}:{destination.key}")`, made without `uuid5`'s detours
    (a test compares them); `flag_id` may be given as its text, made once per flag. A task for
    an escalation across a case's flags adds the escalation's rule id to the name."""
    name = f"{flag_id}:{destination.key}".encode()
    if escalation is not None:
        name += f":{escalation}".encode()
    return UUID(
        bytes=sha1(_TASK_NAMESPACE_BYTES + name, usedforsecurity=False).digest()[:16], version=5
    )


class ReferralTask(Contract):
    """Work for the referral service: build or extend the case for one flag and one destination."""

    schema_version: Literal[1] = 1
    task_id: UUID
    case_key: Annotated[
        str,
        StringConstraints(min_length=1, max_length=400, pattern=f"^{PRINTABLE}+$"),
    ]
    """Subject × destination: flags with one case key gather in one open case."""
    flag_id: UUID
    destination: Destination
    criteria: list[Criterion] = Field(min_length=1, max_length=4)
    priority: Priority
    decision: Literal["refer", "review"]
    rules: list[FiredRule] = Field(min_length=1, max_length=64)
    policy_version: Label
    detected_at: Timestamp
    routed_at: Timestamp
    due_at: Timestamp
    """When the case must be ready (refer) or reviewed (review)."""
    escalation: Label | None = None
    """Set on a task the referral service makes when an escalation of the policy fires across
    the flags of a case (the escalation's rule id; the router never sets it). `flag` is the flag
    that completed it, so the clocks start from that flag's detection."""
    escalated_from: list[UUID] = Field(default_factory=list, max_length=16)
    """With `escalation`: the flags whose rules it required, in the order they arrived."""
    held: Literal["flood_breaker"] | None = None
    """Set by the referral service on a referral it held as a review: its source's flood
    breaker was open (the router never sets it)."""
    flag: ModerationFlag

    @model_validator(mode="after")
    def _matches_flag(self) -> Self:
        if self.flag.flag_id != self.flag_id:
            raise ValueError("flag_id differs from the embedded flag's")
        if self.task_id != task_id_for(self.flag_id, self.destination, self.escalation):
            raise ValueError("task_id is not the uuid5 of flag_id and destination")
        if self.escalated_from and self.escalation is None:
            raise ValueError("escalated_from is only for an escalation's task")
        return self


class RejectionReason(StrEnum):
    OVERSIZED = "oversized"
    INVALID_JSON = "invalid_json"
    INVALID_TEXT = "invalid_text"
    """Not UTF-8, or a string with a lone surrogate."""
    DUPLICATE_KEY = "duplicate_key"
    """An object names one key twice (the last would silently win)."""
    TOO_DEEP = "too_deep"
    """Nested deeper than any contract needs."""
    UNKNOWN_SCHEMA_VERSION = "unknown_schema_version"
    EMBEDDED_MEDIA = "embedded_media"
    INVALID = "invalid"
    UNKNOWN_ORGANISATION = "unknown_organisation"
    """The flag's `platform.org_id` is not in the directory of reporting organisations: no
    packet may be sent in its name."""
    UNPROCESSABLE = "unprocessable"
    """Valid, but the service could not process it: a bug to fix, reported instead of blocking."""


class ValidationProblem(Contract):
    loc: list[str | int] = Field(max_length=16)
    type: str = Field(max_length=64)
    msg: str = Field(max_length=512)


class RejectedMessage(Contract):
    """A dead-letter record: why a message was refused. It never holds the message's bytes."""

    schema_version: Literal[1] = 1
    topic: str = Field(max_length=249)
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    flag_id: UUID | None = None
    reason: RejectionReason
    errors: list[ValidationProblem] = Field(max_length=32)
    consumer_group: str = Field(max_length=255)
    rejected_at: Timestamp
