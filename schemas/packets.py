"""Case packets: what a person sends to the police or the IWF. Typed metadata only.

No field here can hold content: every string is an identifier, a label, a URL, a hash or a
sentence written by this service.
"""

import re
from enum import StrEnum
from typing import Annotated, Literal
from uuid import UUID

from pydantic import Field, StringConstraints

from schemas.base import (
    PRINTABLE,
    Contract,
    CountryCode,
    Identifier,
    Label,
    PostcodeDistrict,
    ShortText,
    Timestamp,
    Url,
)
from schemas.flag import AgeBand, ContentHashes, IpAddress, MediaType, SignalCategory
from schemas.referral import Criterion, FiredRule, Priority

NO_IMAGES_STATEMENT = (
    "No images or other content are attached to this referral. The reporting organisation has "
    "preserved the content and will provide it to law enforcement on lawful request to the "
    "safeguarding contact below, quoting the case id."
)
NoImagesStatement = Annotated[str, StringConstraints(pattern=f"^{re.escape(NO_IMAGES_STATEMENT)}$")]
"""The one sentence a packet may carry about content: that none is attached."""

# NSPCC Helpline for adults worried about a child, professionals included (nspcc.org.uk, checked
# 2026-11-01). Pinned like the no-images statement: a packet carries this text and nothing else.
NSPCC_GUIDANCE = (
    "Not sure whether to report, or want to talk it through with a child protection "
    "professional? The NSPCC Helpline advises adults worried about a child, professionals "
    "included: call 0808 800 5000 or email help@nspcc.org.uk. If a child is in immediate "
    "danger, call 999 now."
)
NSPCC_AFTER_EMERGENCY = (
    "After the emergency call, the NSPCC Helpline advises adults worried about a child, "
    "professionals included: call 0808 800 5000 or email help@nspcc.org.uk. It is not an "
    "emergency service."
)
"""The same helpline on a P0 packet, whose first line is the emergency call: no "not sure
whether to report" beside a child who may be in danger now."""
NspccGuidance = Annotated[
    str,
    StringConstraints(
        pattern=f"^({re.escape(NSPCC_GUIDANCE)}|{re.escape(NSPCC_AFTER_EMERGENCY)})$"
    ),
]

ExternalReference = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9 /._:#-]*$")
]
"""The receiver's reference for a referral: a police incident number, an IWF report reference."""

Instruction = Annotated[
    str, StringConstraints(min_length=1, max_length=512, pattern=f"^{PRINTABLE}+$")
]
"""What the person sending a packet must do, in sentences written by this service: room for a
call from another country, a reference quoted and a force to confirm."""


class Authority(Contract):
    """Who receives the referral and how to reach them."""

    kind: Literal["police", "iwf", "intl", "nca"]
    id: Label
    name: ShortText
    phone: ShortText | None = None
    """The number to call for this referral: the force's 101, or the emergency number at P0."""
    website: Url | None = None
    instruction: Instruction
    police: bool | None = None
    """Whether the receiver is the police, who can act on an emergency; a hotline, clearing house
    or the IWF is not. None on packets built before the field existed."""
    country: CountryCode | None = None
    """The country the receiver serves (`GB` for a UK force and the IWF)."""
    country_name: ShortText | None = None
    """The country as a sentence names it ("the United States"), when this service knows it."""
    emergency_number: ShortText | None = None
    """The number that reaches the police in that country now (999 in the UK, 911 in the United
    States, the police's own 110 in Germany), when this service knows it."""
    emergency_also: ShortText | None = None
    """Another number that reaches them there too (112 in Germany, beside the police's 110)."""
    sender_country: CountryCode | None = None
    """Where the organisation sending the packet is. A number dialled there reaches that
    country's services: when it is not the receiver's country, the sender calls their own
    emergency number and asks their police to contact the receiver's."""
    sender_country_name: ShortText | None = None
    sender_emergency_number: ShortText | None = None
    """The number that reaches the police where the sender is, when this service knows it."""


class Organisation(Contract):
    org_id: Identifier
    name: ShortText
    safeguarding_contact: ShortText
    safeguarding_email: ShortText | None = None


class ContentReference(Contract):
    content_id: Identifier
    media_type: MediaType
    url: Url | None = None
    public: bool | None = None
    hashes: ContentHashes
    uploaded_at: Timestamp | None = None
    uploader_ip: IpAddress | None = None
    flag_id: UUID


class SignalSeen(Contract):
    """What the flag's source found: its category and its own label for it, never content."""

    category: SignalCategory
    label: Label
    """The source's name for the finding (e.g. `sextortion_threat`)."""
    confidence: float = Field(ge=0.0, le=1.0)
    immediate_danger: bool = False


class TimelineEntry(Contract):
    at: Timestamp
    flag_id: UUID
    decision: Literal["refer", "review"]
    """`review`: the policy held this flag for a person's review (see `confirmed_at`)."""
    source: Label
    source_kind: Label
    criteria: list[Criterion] = Field(max_length=4)
    priority: Priority
    signals: list[SignalSeen] = Field(default_factory=list, max_length=32)
    """Empty on packets built before the field existed."""
    confirmed_at: Timestamp | None = None
    """For a review: when a person approved the case after this flag was routed to it; None
    while it is held for a person's review."""
    escalation: Label | None = None
    """Not a flag: the policy's escalation (its rule id) that fired across the case's flags,
    completed by `flag_id`'s flag at `at`; `priority` is the escalation's."""
    escalated_from: list[UUID] = Field(default_factory=list, max_length=16)
    """With `escalation`: the flags whose rules it required, in the order they arrived."""
    held: Literal["flood_breaker"] | None = None
    """A referral held as a review because its source's flood breaker was open (not the
    policy's review): a person decides it."""


class SubjectIdentifiers(Contract):
    account_id: Identifier
    username: ShortText | None = None
    ips: list[IpAddress] = Field(default_factory=list)
    country: CountryCode | None = None
    postcode_district: PostcodeDistrict | None = None
    """Where the reported account is, when the platform knows (never a full postcode)."""


class ChildKnown(Contract):
    account_id: Identifier | None = None
    age_band: AgeBand | None = None
    country: CountryCode | None = None
    postcode_district: PostcodeDistrict | None = None


class Supplement(Contract):
    """This packet adds to one already sent: the receiver should file it under that reference."""

    supplements_version: int = Field(ge=1)
    """The packet version that was sent."""
    external_reference: ExternalReference
    submitted_at: Timestamp
    new_flag_ids: list[UUID]
    """The flags that arrived after that version was sent."""
    new_priority: Priority | None = None
    """The most urgent priority among the new flags and the escalations they completed: a P0
    case whose new flags are not P0 was already reported as an emergency, and the supplement
    says so instead of asking for another emergency call. None on packets stored before."""


class EarlierReport(Contract):
    """A report of the same subject already made elsewhere, so the receiver does not take it
    for a new one (the NCA asks not to duplicate referrals already made to NCMEC)."""

    receiver: Literal["nca", "ncmec_cybertipline"]
    reference: ExternalReference
    """The receiver's reference: the NCA's, or the CyberTipline report id."""
    submitted_at: Timestamp
    case_id: UUID
    """This service's case that sent it."""
    packet_version: int = Field(ge=1)


class PolicePacket(Contract):
    """A referral to a UK police force, or outside the UK to the country's police or its own
    reporting mechanism (a hotline such as NCMEC's CyberTipline or an INHOPE member).

    Its lists are built by this service from bounded flags, so they are not capped: a prolific
    subject's case must never fail to build.
    """

    kind: Literal["police"] = "police"
    case_id: UUID
    version: int = Field(ge=1)
    built_at: Timestamp
    authority: Authority
    organisation: Organisation
    priority: Priority
    summary: str = Field(max_length=1024)
    criteria: list[Criterion] = Field(max_length=4)
    rules: list[FiredRule]
    timeline: list[TimelineEntry]
    subject: SubjectIdentifiers
    children: list[ChildKnown]
    content: list[ContentReference]
    supplement: Supplement | None = None
    earlier_reports: list[EarlierReport] = Field(default_factory=list)
    """For a packet to NCMEC: the subject's reports already sent to the NCA (and to NCMEC from
    other cases), so neither takes the other's for a new one. Empty otherwise."""
    flags_omitted: int = Field(default=0, ge=0)
    """Earlier flags of the case this packet does not list (a case holds more flags than a
    packet shows); every flag is listed by the case API."""
    no_images_attached: NoImagesStatement = NO_IMAGES_STATEMENT
    support: NspccGuidance | None = NSPCC_GUIDANCE
    """For a sender in the UK, whoever receives the packet; None for a sender elsewhere, where
    the NSPCC's UK helpline and its "call 999" do not apply."""


class IwfItem(Contract):
    content_id: Identifier
    media_type: MediaType
    url: Url | None = None
    publicly_reachable: bool | None = None
    hashes: ContentHashes
    first_seen_at: Timestamp
    hash_lists: list[Label]


class IwfPacket(Contract):
    """A report to the IWF of images that may be shared beyond the platform."""

    kind: Literal["iwf"] = "iwf"
    case_id: UUID
    version: int = Field(ge=1)
    built_at: Timestamp
    authority: Authority
    organisation: Organisation
    priority: Priority
    items: list[IwfItem]
    supplement: Supplement | None = None
    flags_omitted: int = Field(default=0, ge=0)
    """Earlier flags of the case this packet does not list (a case holds more flags than a
    packet shows); every flag is listed by the case API."""
    no_images_attached: NoImagesStatement = NO_IMAGES_STATEMENT
    support: NspccGuidance = NSPCC_GUIDANCE


class NcaTier(StrEnum):
    """How soon the NCA must have the report (our reading of SI 2026/268, unverified): from our
    priority, P0 and P1 immediately, P2 as soon as reasonably practicable, P3 without undue
    delay (`services.domain.nca.tier`)."""

    IMMEDIATELY = "immediately"
    AS_SOON_AS_REASONABLY_PRACTICABLE = "as_soon_as_reasonably_practicable"
    WITHOUT_UNDUE_DELAY = "without_undue_delay"


NCA_DECLARATION = (
    "The reporting organisation declares that this report contains all the information listed "
    "in Schedule 1 to the Online Safety (CSEA Content Reporting by Regulated User-to-User "
    "Service Providers) Regulations 2026 that is reasonably available to it, that each item not "
    "available is named as such, and that the information is accurate to the best of its "
    "knowledge and belief."
)
"""Our wording of the declaration a report ends with (the regulations' own wording was not
verified here): pinned, like the no-images statement."""
NcaDeclaration = Annotated[str, StringConstraints(pattern=f"^{re.escape(NCA_DECLARATION)}$")]


class ScheduleItem(Contract):
    """One item of Schedule 1 (our reading): given in this packet, or named as not available."""

    item: Label
    """Our id for the item (`services.domain.nca.SCHEDULE_1`)."""
    asks_for: ShortText
    """What the item asks for, in our words."""
    available: bool
    fields: list[Label] = Field(default_factory=list, max_length=16)
    """Where this packet holds it (field names of `NcaPacket`), when available."""
    note: Instruction | None = None
    """Why it is not available, or what the value does and does not say."""


class NcaService(Contract):
    """The service the content was found on, and why the report falls in scope."""

    name: Label
    """The platform's name for its service (the flags' `platform.service`)."""
    organisation_country: CountryCode
    in_scope_because: list[Label] = Field(min_length=1, max_length=8)
    """`uk_service`, or for a non-UK service the UK links found (`services.domain.nca`)."""


class NcaPacket(Contract):
    """The statutory report of CSEA content to the National Crime Agency (Online Safety Act
    2023, s.66). Our own documented contract: the NCA's portal and API field names are not
    public here. Schedule 1's items are listed in `schedule_1`, each given or named as not
    available; the values are in the typed fields below, metadata only."""

    kind: Literal["nca"] = "nca"
    case_id: UUID
    version: int = Field(ge=1)
    built_at: Timestamp
    authority: Authority
    organisation: Organisation
    """The reporter and its contact."""
    service: NcaService
    priority: Priority
    tier: NcaTier
    summary: str = Field(max_length=1024)
    criteria: list[Criterion] = Field(max_length=4)
    rules: list[FiredRule]
    timeline: list[TimelineEntry]
    """How the content was detected: each flag, its source and what it found."""
    subject: SubjectIdentifiers
    """The user identified: account identifiers and the IP addresses the platform gave."""
    children: list[ChildKnown]
    """Connected accounts, as far as the flags name them: the children at risk."""
    content: list[ContentReference]
    """The content's URLs, hashes, upload times and uploader IPs."""
    earlier_reports: list[EarlierReport] = Field(default_factory=list)
    """Reports of the same subject already sent to NCMEC (and earlier NCA references)."""
    schedule_1: list[ScheduleItem]
    supplement: Supplement | None = None
    flags_omitted: int = Field(default=0, ge=0)
    declaration: NcaDeclaration = NCA_DECLARATION
    no_images_attached: NoImagesStatement = NO_IMAGES_STATEMENT
    support: NspccGuidance | None = NSPCC_GUIDANCE


Packet = PolicePacket | IwfPacket | NcaPacket
