"""A case packet for NCMEC's CyberTipline as the XML `report` its Reporting API takes.

Pure: a `PolicePacket` whose authority is NCMEC's CyberTipline in, the bytes of one `report`
document out, valid against the schema vendored under `schemas/external/ncmec/` (the tests
validate every rendering against it). Metadata only: the report carries no file and no file
bytes. The schema's structured hash field (`fileDetails/originalFileHash`) belongs to a file
uploaded to a report, which this service never does, so content hashes and upload IPs are
listed in the report's `additionalInfo` text, beside the statement that no images are attached.
"""

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from datetime import UTC, datetime

from schemas.flag import AgeBand
from schemas.packets import ChildKnown, ContentReference, Packet, PolicePacket
from schemas.referral import Criterion, Priority
from services.referral.exceptions import InvalidRequest

NCMEC_MECHANISM = "ncmec_cybertipline"
"""The mechanism id of NCMEC's CyberTipline (`services.domain.mechanisms`)."""

CHILD_PORNOGRAPHY = "Child Pornography (possession, manufacture, and distribution)"
ONLINE_ENTICEMENT = "Online Enticement of Children for Sexual Acts"
"""The schema's `incidentType` values this service reports (its enumeration, verbatim)."""

# A report has one incident type. Grooming and coercion (sextortion) come first: NCMEC files
# sextortion under online enticement, and images a child was coerced into sending are part of
# that enticement; images alone are child pornography in the schema's words.
INCIDENT_TYPES: tuple[tuple[frozenset[Criterion], str], ...] = (
    (frozenset({Criterion.GROOMING, Criterion.COERCION}), ONLINE_ENTICEMENT),
    (frozenset({Criterion.IIOC}), CHILD_PORNOGRAPHY),
)

# `reportAnnotations`: each is set when the case has the criterion, or a source's label for a
# signal holds the word as one of its parts (`sextortion_threat`, `csam.solicitation`).
# `minorToMinorInteraction` and `spam` are never set: nothing here says who is a minor or what
# is spam. The schema's elements are an `xs:all`; they are written in its order.
ANNOTATIONS: tuple[tuple[str, frozenset[Criterion], str], ...] = (
    ("sextortion", frozenset({Criterion.COERCION}), "sextortion"),
    ("csamSolicitation", frozenset(), "solicitation"),
    ("sadisticOnlineExploitation", frozenset(), "sadistic"),
)

AGE_BANDS = {
    AgeBand.UNDER_13: "under 13",
    AgeBand.AGE_13_15: "13 to 15",
    AgeBand.AGE_16_17: "16 to 17",
}
"""The schema has an age (`xs:int`) but no age range: a band goes in the victim's notes."""

HASHES = ("md5", "sha1", "sha256", "pdq", "photodna")

# The schema's `country` enumeration (its empty value aside), so a country code it does not know
# is left out instead of making the report invalid. A test checks it against the vendored XSD.
_COUNTRY_CODES = """
    A1 A2 O1 AD AE AF AG AI AL AM AN AO AP AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL
    BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CX CW CY CZ DE
    DJ DK DM DO DZ EC EE EG EH ER ES ET EU FI FJ FK FM FO FR FX GA GB GD GE GF GG GH GI GL GM GN
    GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH
    KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO
    MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL
    PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV
    SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN
    VU WF WS XK YE YT ZA ZM ZW
"""
COUNTRIES = frozenset(_COUNTRY_CODES.split())

# Characters XML 1.0 does not allow in a document (contracts already refuse control characters;
# a lone surrogate or U+FFFE would still make the bytes unparseable).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_LABEL_PARTS = re.compile(r"[_.:-]")


class NotForNcmec(InvalidRequest):
    """The packet is not one a CyberTipline report can be made from (400): its receiver is not
    NCMEC, or none of its criteria is an incident type the CyberTipline takes."""


def is_report_id(reference: str) -> bool:
    """Whether a reference is a CyberTipline report id: a number (the schema's `xs:long`)."""
    return reference.isdigit() and len(reference) <= 18


def incident_type(criteria: Iterable[Criterion]) -> str | None:
    """The CyberTipline incident type for a case's criteria; None when none applies."""
    held = set(criteria)
    return next((kind for wanted, kind in INCIDENT_TYPES if held & wanted), None)


def annotations(packet: PolicePacket) -> list[str]:
    """The `reportAnnotations` the packet's criteria and its sources' labels call for."""
    criteria = set(packet.criteria)
    parts = {
        part
        for entry in packet.timeline
        for signal in entry.signals
        for part in _LABEL_PARTS.split(signal.label)
    }
    return [name for name, wanted, word in ANNOTATIONS if criteria & wanted or word in parts]


def render(packet: Packet, *, service: str | None = None) -> bytes:
    """The packet as a CyberTipline `report` document (UTF-8, with its XML declaration).

    `service`: the platform's name for the service the content was found on (the flags'
    `platform.service`), which the packet does not hold; it becomes the incident's `platform`
    and each account's `espService`. Raises `NotForNcmec` for a packet whose receiver is not
    NCMEC's CyberTipline or whose criteria map to no incident type.
    """
    if not (
        isinstance(packet, PolicePacket)
        and packet.authority.kind == "intl"
        and packet.authority.id == NCMEC_MECHANISM
    ):
        raise NotForNcmec("the packet's receiver is not NCMEC's CyberTipline")
    kind = incident_type(packet.criteria)
    if kind is None:
        raise NotForNcmec("none of the case's criteria is a CyberTipline incident type")
    report = ET.Element("report")
    _incident_summary(report, packet, kind, service)
    urls = list(dict.fromkeys(c.url for c in packet.content if c.url))
    if urls:
        web = _sub(ET.SubElement(report, "internetDetails"), "webPageIncident")
        for url in urls:
            _sub(web, "url", url)
    _reporter(report, packet)
    _reported(report, packet, service)
    for child in packet.children:
        _victim(report, child, service)
    _sub(report, "additionalInfo", _notes(packet))
    ET.indent(report, space="  ")
    body: bytes = ET.tostring(report, encoding="utf-8", xml_declaration=True)
    return body + b"\n"


def _text(value: str) -> str:
    return _NOT_XML.sub("\ufffd", value)


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    element = ET.SubElement(parent, tag)
    if text is not None:
        element.text = _text(text)
    return element


def _at(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _incident_summary(
    report: ET.Element, packet: PolicePacket, kind: str, service: str | None
) -> None:
    summary = _sub(report, "incidentSummary")
    _sub(summary, "incidentType", kind)
    if service:
        _sub(summary, "platform", service)
    new = packet.supplement.new_priority if packet.supplement else None
    # A supplement that adds no P0 to a P0 case was escalated when the case was first reported.
    if packet.priority is Priority.P0 and (new is None or new is Priority.P0):
        _sub(
            summary,
            "escalateToHighPriority",
            "A child may be in immediate danger: the platform's systems flagged immediate "
            "danger to a child (priority P0).",
        )
    marked = annotations(packet)
    if marked:
        tags = _sub(summary, "reportAnnotations")
        for name in marked:
            _sub(tags, name, "true")
    first = min((entry.at for entry in packet.timeline), default=packet.built_at)
    _sub(summary, "incidentDateTime", _at(first))
    _sub(
        summary,
        "incidentDateTimeDescription",
        "When the platform's systems first detected the activity this report lists.",
    )


def _reporter(report: ET.Element, packet: PolicePacket) -> None:
    organisation = packet.organisation
    reporter = _sub(report, "reporter")
    person = _sub(reporter, "reportingPerson")
    if organisation.safeguarding_email:
        _sub(person, "email", organisation.safeguarding_email)
    _sub(
        reporter,
        "companyTemplate",
        f"{organisation.name} (organisation id {organisation.org_id}). Safeguarding contact: "
        f"{organisation.safeguarding_contact}"
        + (f", {organisation.safeguarding_email}" if organisation.safeguarding_email else "")
        + ".",
    )


def _reported(report: ET.Element, packet: PolicePacket, service: str | None) -> None:
    subject = packet.subject
    reported = _sub(report, "personOrUserReported")
    _sub(reported, "espIdentifier", subject.account_id)
    if service:
        _sub(reported, "espService", service)
    if subject.username:
        _sub(reported, "screenName", subject.username)
    for ip in subject.ips:
        _sub(_sub(reported, "ipCaptureEvent"), "ipAddress", str(ip))
    reference = packet.supplement.external_reference if packet.supplement else None
    prior = [reference] if reference else []
    prior += [r.reference for r in packet.earlier_reports if r.receiver == NCMEC_MECHANISM]
    for report_id in dict.fromkeys(prior):
        if is_report_id(report_id):
            # The report this one adds to, and those sent for the same account from other cases.
            _sub(reported, "priorCTReports", report_id)
    if subject.country in COUNTRIES:
        _sub(_sub(reported, "estimatedLocation"), "countryCode", subject.country)


def _victim(report: ET.Element, child: ChildKnown, service: str | None) -> None:
    victim = _sub(report, "victim")
    _sub(victim, "victimPerson")
    if child.account_id:
        _sub(victim, "espIdentifier", child.account_id)
        if service:
            _sub(victim, "espService", service)
    if child.country in COUNTRIES:
        _sub(_sub(victim, "estimatedLocation"), "countryCode", child.country)
    band = AGE_BANDS.get(child.age_band) if child.age_band else None
    if band:
        _sub(victim, "additionalInfo", f"Age band given by the platform: {band}.")


def _content(item: ContentReference) -> str:
    hashes = item.hashes.model_dump(exclude_none=True)
    parts = [f"{name} {hashes[name]}" for name in HASHES if name in hashes]
    line = f"- {item.content_id} ({item.media_type.value})"
    if parts:
        line += ": " + ", ".join(parts)
    if item.uploaded_at:
        line += f"; uploaded at {_at(item.uploaded_at)}"
    if item.uploader_ip:
        line += f" from IP {item.uploader_ip}"
    return line


def _notes(packet: PolicePacket) -> str:
    lines = [
        f"Case {packet.case_id}, packet version {packet.version}, priority "
        f"{packet.priority.value}; criteria: {', '.join(c.value for c in packet.criteria)}.",
        packet.summary,
    ]
    if packet.content:
        lines.append("Content references (metadata only):")
        lines.extend(_content(item) for item in packet.content)
    if packet.flags_omitted:
        lines.append(f"Earlier flags of the case not listed here: {packet.flags_omitted}.")
    # The schema has no place for another body's reference: the NCA's go here, so the NCA and
    # NCMEC each see that the other has the report (the NCA asks for no duplicate referral).
    lines.extend(
        f"Also reported to the UK National Crime Agency (NCA) under reference {r.reference}, "
        f"sent at {_at(r.submitted_at)}."
        for r in packet.earlier_reports
        if r.receiver == "nca"
    )
    lines.append(packet.no_images_attached)
    return "\n".join(lines)
