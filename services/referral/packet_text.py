"""A packet as plain text: read down the phone, or pasted into a police, hotline, IWF or NCA form.

Its wording is a template per receiver: a UK police force, a country's police abroad (with that
country's emergency number), a reporting hotline (NCMEC, an INHOPE member, a national
mechanism), the IWF, or the NCA (the statutory report, with its Schedule 1 items). Pure; a
packet stored before a field existed still reads right.
"""

from enum import Enum

from schemas.flag import ContentHashes
from schemas.packets import (
    NSPCC_AFTER_EMERGENCY,
    Authority,
    IwfPacket,
    NcaPacket,
    Organisation,
    Packet,
    PolicePacket,
    Supplement,
    TimelineEntry,
)
from schemas.referral import Priority
from services.domain.countries import COUNTRIES, UK_EMERGENCY, country_name
from services.domain.mechanisms import LOCAL_POLICE, UK
from services.domain.nca import TIER_WORDS
from services.referral import packet_words as words

_HASH_NAMES = (
    ("md5", "MD5"),
    ("sha1", "SHA-1"),
    ("sha256", "SHA-256"),
    ("photodna", "PhotoDNA"),
    ("pdq", "PDQ"),
)


class Receiver(Enum):
    """Who reads the packet at the other end: each has its own wording."""

    UK_POLICE = "a UK police force"
    POLICE_ABROAD = "a country's police abroad"
    HOTLINE = "a reporting hotline or national mechanism"
    IWF = "the Internet Watch Foundation"
    NCA = "the National Crime Agency"


_UK_RECEIVERS = (Receiver.UK_POLICE, Receiver.IWF, Receiver.NCA)
"""Receivers in the UK whatever the case: a packet stored without its country is read so."""


def receiver(authority: Authority) -> Receiver:
    """The template for an authority (inferred for packets stored before `police` existed)."""
    if authority.kind == "iwf":
        return Receiver.IWF
    if authority.kind == "nca":
        return Receiver.NCA
    if authority.kind == "police":
        return Receiver.UK_POLICE
    police = authority.police if authority.police is not None else authority.id == LOCAL_POLICE
    return Receiver.POLICE_ABROAD if police else Receiver.HOTLINE


def _yes_no(value: bool | None) -> str:
    return "unknown" if value is None else ("yes" if value else "no")


def _hashes(hashes: ContentHashes, indent: str) -> list[str]:
    return [
        f"{indent}{label}: {getattr(hashes, field)}"
        for field, label in _HASH_NAMES
        if getattr(hashes, field) is not None
    ]


def _country(code: str) -> str:
    """`the United Kingdom (GB)`; a code this service has no name for stays a code."""
    country = COUNTRIES.get(code)
    return f"{country.name} ({code})" if country else country_name(code)


def _where(authority: Authority) -> str | None:
    """The receiver's country in words; None on packets stored before it was recorded."""
    if authority.country_name:
        return authority.country_name
    return country_name(authority.country) if authority.country else None


def _title(authority: Authority) -> str:
    where = _where(authority)
    match receiver(authority):
        case Receiver.UK_POLICE:
            return "CSAE REFERRAL TO THE POLICE"
        case Receiver.POLICE_ABROAD:
            if where:
                return f"CSAE REFERRAL TO THE POLICE IN {where.upper()}"
            return "CSAE REFERRAL TO THE LOCAL POLICE"
        case Receiver.HOTLINE:
            return f"CSAE REPORT TO {authority.name}"
        case Receiver.IWF:
            return "REPORT TO THE INTERNET WATCH FOUNDATION"
        case Receiver.NCA:
            return "STATUTORY CSEA REPORT TO THE NATIONAL CRIME AGENCY (ONLINE SAFETY ACT S.66)"


def _sender_where(authority: Authority) -> str | None:
    """The sender's country in words, when it is not the receiver's (None when it is, or on
    packets stored before it was recorded)."""
    code = authority.sender_country
    if not code or not authority.country or code == authority.country:
        return None
    return authority.sender_country_name or country_name(code)


def _number(authority: Authority) -> str | None:
    """The receiver's emergency number in words: `911`, `110 (police; 112 also works)`."""
    number = authority.emergency_number
    if number is None and receiver(authority) in _UK_RECEIVERS:
        number = UK_EMERGENCY
    return words.number(number, authority.emergency_also) if number else None


def _call_from_abroad(authority: Authority, when: str) -> str:
    """The sender's own emergency call when the receiver is in another country."""
    sender = (_sender_where(authority) or "").upper()
    own = authority.sender_emergency_number
    call = (
        f"CALL {own}, YOUR EMERGENCY NUMBER IN {sender}, {when}"
        if own
        else f"CALL YOUR OWN EMERGENCY NUMBER {when}"
    )
    where = (_where(authority) or "THE CHILD'S COUNTRY").upper()
    there = f" ({authority.emergency_number} THERE)" if authority.emergency_number else ""
    return f"{call}, AND ASK YOUR POLICE TO CONTACT THE POLICE IN {where}{there}."


def _banner(authority: Authority) -> str:
    """The one action at the top of a P0 packet: the emergency call, from where the sender is."""
    who = receiver(authority)
    not_emergency = {
        Receiver.IWF: " THE IWF IS NOT AN EMERGENCY SERVICE.",
        Receiver.NCA: " THE NCA'S REPORTING IS NOT AN EMERGENCY SERVICE.",
        Receiver.HOTLINE: " THIS REPORTING SERVICE IS NOT AN EMERGENCY SERVICE.",
    }.get(who, "")
    if _sender_where(authority):
        return (
            f"A CHILD MAY BE IN IMMEDIATE DANGER: {_call_from_abroad(authority, 'NOW')}"
            f"{not_emergency}"
        )
    number = authority.emergency_number
    where = (_where(authority) or "").upper()
    if who in _UK_RECEIVERS:
        call = f"CALL {number or UK_EMERGENCY} NOW."
    else:
        # A number is never dropped for want of the country's name.
        whose = f"THE EMERGENCY NUMBER IN {where}" if where else "THE LOCAL EMERGENCY NUMBER"
        if authority.emergency_also:
            whose = f"THE POLICE'S NUMBER IN {where}" if where else "THE POLICE'S NUMBER"
        also = f" ({authority.emergency_also} ALSO WORKS)" if authority.emergency_also else ""
        emergency = f"{number}, {whose}, NOW{also}." if number else f"{whose} NOW."
        call = (
            f"CALL THE POLICE FIRST, ON {emergency}"
            if who is Receiver.HOTLINE
            else f"CALL {emergency}"
        )
    return f"A CHILD MAY BE IN IMMEDIATE DANGER: {call}{not_emergency}"


def _reported(packet: Packet) -> bool:
    """A P0 case's supplement whose new flags are not P0: the emergency was reported already."""
    supplement = packet.supplement
    new = supplement.new_priority if supplement else None
    return packet.priority is Priority.P0 and new is not None and new is not Priority.P0


def _already(packet: Packet) -> str:
    """The top line of a supplement to an emergency already reported: no new emergency call
    unless a child is in danger now."""
    assert packet.supplement is not None
    reference = packet.supplement.external_reference
    authority = packet.authority
    if receiver(authority) is Receiver.UK_POLICE:
        via = "THROUGH THE FORCE'S ONLINE REPORTING" if _sender_where(authority) else "VIA 101"
        send = f"SEND THIS {via}, QUOTING {reference}"
    else:
        send = f"SEND THIS AS FURTHER INFORMATION, QUOTING {reference}"
    if _sender_where(authority):
        again = _call_from_abroad(authority, "AGAIN")
    else:
        again = f"CALL {authority.emergency_number or 'THE LOCAL EMERGENCY NUMBER'} AGAIN."
    return (
        f"ALREADY REPORTED AS AN EMERGENCY UNDER {reference}: {send}. IF A CHILD IS IN DANGER "
        f"NOW, {again}"
    )


def _header(packet: Packet) -> list[str]:
    priority = packet.priority
    lines = [
        f"{_title(packet.authority)} · PRIORITY {priority.value} ({words.PRIORITIES[priority]})",
        f"Case {packet.case_id} · packet version {packet.version} · built "
        f"{words.at(packet.built_at)}",
    ]
    if isinstance(packet, PolicePacket | NcaPacket):
        lines += [
            f"ESCALATED to {e.priority.value} at {words.at(e.at)}: "
            f"{words.escalated(e, packet.rules)}."
            for e in words.raising(packet.timeline, priority)
        ]
    lines.append("")
    if priority is Priority.P0:
        top = _already(packet) if _reported(packet) else _banner(packet.authority)
        lines = [top, "", *lines]
    return lines


def _supplement(supplement: Supplement | None) -> list[str]:
    if supplement is None:
        return []
    return [
        f"SUPPLEMENTARY to packet version {supplement.supplements_version}, sent as "
        f"{supplement.external_reference} on {words.at(supplement.submitted_at)}. "
        "File it with that referral: it is not a new one.",
        "  New flags: " + ", ".join(str(f) for f in supplement.new_flag_ids),
        "",
    ]


def _omitted(count: int, case_id: object) -> list[str]:
    if not count:
        return []
    return [
        f"  ({words.counted(count, 'earlier flag')} of this case are not listed here; the case "
        f"service lists every flag of case {case_id})"
    ]


def _to(packet: Packet) -> list[str]:
    authority = packet.authority
    who = receiver(authority)
    where = _where(authority)
    urgent = packet.priority is Priority.P0 and not _reported(packet)
    lines = [f"TO: {authority.name}"]
    if who is Receiver.HOTLINE and authority.country:
        lines.append(f"  Country: {_country(authority.country)}")
    number = _number(authority)
    # Beside a P0's "call 999 now" stands no other number (the force's 101 least of all).
    if authority.phone and authority.phone != authority.emergency_number and not urgent:
        lines.append(f"  Phone: {authority.phone}")
    if number and who is Receiver.HOTLINE:
        in_where = f" in {where}" if where else ""
        lines.append(
            f"  Police emergency number{in_where}: {number}. {authority.name} is not an "
            "emergency service."
        )
    elif number and who is Receiver.POLICE_ABROAD:
        lines.append(f"  Emergency number{f' in {where}' if where else ''}: {number}")
    elif number and who is Receiver.UK_POLICE and packet.priority is Priority.P0:
        lines.append(f"  Emergency number: {number}")
    sender = _sender_where(authority)
    if number and sender and who not in (Receiver.IWF, Receiver.NCA):
        own = authority.sender_emergency_number or "your own emergency number"
        lines.append(
            f"  It works only in {where}. From {sender}, call {own} and ask your police to "
            "contact them."
        )
    if authority.website:
        lines.append(f"  Website: {authority.website}")
    lines.append(f"  ACTION: {authority.instruction}")
    return lines


def _parties(packet: Packet) -> list[str]:
    organisation: Organisation = packet.organisation
    lines = [
        *_to(packet),
        "",
        f"FROM: {organisation.name} (organisation id {organisation.org_id})",
        f"  Safeguarding contact: {organisation.safeguarding_contact}",
    ]
    if organisation.safeguarding_email:
        lines.append(f"  Email: {organisation.safeguarding_email}")
    return [*lines, ""]


def _footer(packet: Packet) -> list[str]:
    organisation = packet.organisation
    contact = organisation.safeguarding_contact + (
        f", {organisation.safeguarding_email}" if organisation.safeguarding_email else ""
    )
    lines = [
        "NO IMAGES ATTACHED",
        f"  {packet.no_images_attached}",
        f"  Safeguarding contact: {contact}",
    ]
    if packet.support and _uk_sender(packet.authority):
        support = NSPCC_AFTER_EMERGENCY if packet.priority is Priority.P0 else packet.support
        lines += ["", "SUPPORT", f"  {support}"]
    return lines


def _uk_sender(authority: Authority) -> bool:
    """The NSPCC helpline and its "call 999" are for a sender in the UK, whoever receives the
    packet (inferred from the receiver for packets stored before `sender_country` existed)."""
    if authority.sender_country:
        return authority.sender_country == UK
    return receiver(authority) in _UK_RECEIVERS


def _finding(entry: TimelineEntry) -> str:
    """What the flag's source found, in words (its criteria for packets stored before
    `signals` existed)."""
    if not entry.signals:
        return words.listed(words.criterion(c) for c in entry.criteria)
    found = []
    for signal in entry.signals:
        danger = f", {words.DANGER}" if signal.immediate_danger else ""
        found.append(
            f"{words.label(signal.label)} ({words.FINDINGS[signal.category]}, confidence "
            f"{signal.confidence:.2f}{danger})"
        )
    return "; ".join(found)


def _timeline(packet: PolicePacket | NcaPacket) -> list[str]:
    lines = ["TIMELINE (oldest first)", *_omitted(packet.flags_omitted, packet.case_id)]
    own = {entry.flag_id for entry in packet.timeline if entry.escalation is None}
    order = list(Priority)
    case = len(order)  # the case's priority so far, as an index into `order`: none yet
    for entry in packet.timeline:
        raised = order.index(entry.priority) < case
        case = min(case, order.index(entry.priority))
        found = (
            f"    Found by {entry.source} ({words.source_kind(entry.source_kind)}): "
            f"{_finding(entry)}"
        )
        if entry.escalation is None:
            lines += [
                f"  - {words.at(entry.at)} · flag {entry.flag_id} · {entry.priority.value} · "
                f"{words.decision(entry)}",
                found,
            ]
            continue
        # An escalation that finds the case as urgent already changes nothing: said so, so it
        # never reads as the case going down.
        what = (
            f"ESCALATED to {entry.priority.value}"
            if raised
            else f"escalation at {entry.priority.value}, no change (the case was {order[case]})"
        )
        lines += [
            f"  - {words.at(entry.at)} · {what}: {words.escalated(entry, packet.rules)}",
            f"    The policy's escalation across this case's flags, completed by flag "
            f"{entry.flag_id}: not a new flag.",
        ]
        if entry.flag_id not in own:
            lines.append(found)
    return lines


def _criteria(packet: PolicePacket | NcaPacket) -> list[str]:
    uk = receiver(packet.authority) is Receiver.UK_POLICE
    lines = ["CRITERIA (UK reporting guidance)" if uk else "CRITERIA"]
    described = words.criteria_words(packet.criteria, packet.rules, packet.timeline)
    lines += [f"  - {words.capital(text)}" for text in described]
    lines += ["", "WHY: THE RULES THAT FIRED (referrals first)"]
    for rule in words.referrals_first(packet.rules):
        what = (
            f"refer at {rule.priority.value}"
            if rule.outcome == "refer"
            else f"review at {rule.priority.value} (a person confirms first)"
        )
        found = words.grounds(rule, packet.rules)
        lines += [
            f"  - {rule.rule_id}: {what}, for "
            + words.listed(words.criterion(c, found) for c in rule.criteria),
            "    Conditions met, in the policy's terms: " + "; ".join(rule.matched),
        ]
    return lines


def _people(packet: PolicePacket | NcaPacket) -> list[str]:
    subject = packet.subject
    lines = ["SUBJECT (the reported account)", f"  Account id: {subject.account_id}"]
    if subject.username:
        lines.append(f"  Username: {subject.username}")
    if subject.ips:
        lines.append("  IP addresses: " + ", ".join(str(ip) for ip in subject.ips))
    if subject.country:
        lines.append(f"  Country: {_country(subject.country)}")
    if subject.postcode_district:
        lines.append(f"  Postcode district: {subject.postcode_district}")
    lines += ["", "CHILDREN AT RISK, AS FAR AS KNOWN"]
    if not packet.children:
        lines.append("  None identified in the flags.")
    for child in packet.children:
        known = [
            f"account id {child.account_id}" if child.account_id else None,
            words.AGES[child.age_band] if child.age_band else None,
            f"in {_country(child.country)}" if child.country else None,
            f"postcode district {child.postcode_district}" if child.postcode_district else None,
        ]
        lines.append("  - " + (", ".join(k for k in known if k) or "no details known"))
    return lines


def _content(packet: PolicePacket | NcaPacket) -> list[str]:
    lines = ["CONTENT REFERENCES (identifiers only)"]
    if not packet.content:
        lines.append("  None.")
    for item in packet.content:
        lines.append(f"  - {item.content_id}: {item.media_type.value}, from flag {item.flag_id}")
        if item.url:
            lines.append(f"    URL: {item.url} (public: {_yes_no(item.public)})")
        if item.uploaded_at:
            lines.append(f"    Uploaded: {words.at(item.uploaded_at)}")
        if item.uploader_ip:
            lines.append(f"    Uploader IP: {item.uploader_ip}")
        lines += _hashes(item.hashes, "    ")
    return lines


def _police(packet: PolicePacket) -> list[str]:
    return [
        *_header(packet),
        *_supplement(packet.supplement),
        *_parties(packet),
        "SUMMARY",
        f"  {packet.summary}",
        "",
        *([*_earlier(packet), ""] if packet.earlier_reports else []),
        *_findings(packet),
        *_footer(packet),
    ]


def _findings(packet: PolicePacket | NcaPacket) -> list[str]:
    """What was found and about whom: criteria and rules, timeline, people, content."""
    return [
        *_criteria(packet),
        "",
        *_timeline(packet),
        "",
        *_people(packet),
        "",
        *_content(packet),
        "",
    ]


def _iwf(packet: IwfPacket) -> list[str]:
    lines = [*_header(packet), *_supplement(packet.supplement), *_parties(packet)]
    lines.append(f"ITEMS ({len(packet.items)})")
    lines += _omitted(packet.flags_omitted, packet.case_id)
    for item in packet.items:
        lines += [
            f"  - {item.content_id}: {item.media_type.value}, first seen "
            f"{words.at(item.first_seen_at)}",
            f"    Publicly reachable: {_yes_no(item.publicly_reachable)}",
        ]
        if item.url:
            lines.append(f"    URL: {item.url}")
        lines += _hashes(item.hashes, "    ")
        if item.hash_lists:
            lines.append("    Matched hash lists: " + ", ".join(item.hash_lists))
    return [*lines, "", *_footer(packet)]


def _earlier(packet: PolicePacket | NcaPacket) -> list[str]:
    lines = ["EARLIER REPORTS OF THIS SUBJECT (not to be taken for new ones)"]
    if not packet.earlier_reports:
        lines.append("  None recorded by this service.")
    for report in packet.earlier_reports:
        to = (
            "NCMEC CyberTipline report"
            if report.receiver == "ncmec_cybertipline"
            else "NCA reference"
        )
        lines.append(
            f"  - {to} {report.reference}, sent {words.at(report.submitted_at)} (case "
            f"{report.case_id}, packet version {report.packet_version})"
        )
    return lines


def _schedule(packet: NcaPacket) -> list[str]:
    lines = ["SCHEDULE 1 ITEMS (our reading of SI 2026/268)"]
    for item in packet.schedule_1:
        state = "given" if item.available else "NOT AVAILABLE"
        where = f" (in {', '.join(item.fields)})" if item.fields else ""
        note = f": {item.note}" if item.note else ""
        lines.append(f"  - {item.item}, {item.asks_for}: {state}{where}{note}")
    return lines


def _nca(packet: NcaPacket) -> list[str]:
    service = packet.service
    return [
        *_header(packet),
        *_supplement(packet.supplement),
        *_parties(packet),
        f"TIER: {TIER_WORDS[packet.tier]}; from priority {packet.priority.value}",
        f"SERVICE: {service.name}, of an organisation in {_country(service.organisation_country)}"
        f"; in scope because: {', '.join(service.in_scope_because)}",
        "",
        "SUMMARY",
        f"  {packet.summary}",
        "",
        *_schedule(packet),
        "",
        *_earlier(packet),
        "",
        *_findings(packet),
        "DECLARATION",
        f"  {packet.declaration}",
        "",
        *_footer(packet),
    ]


def render_text(packet: Packet) -> str:
    """The packet in plain text, every field a person needs in reading order."""
    if isinstance(packet, NcaPacket):
        lines = _nca(packet)
    elif isinstance(packet, IwfPacket):
        lines = _iwf(packet)
    else:
        lines = _police(packet)
    return "\n".join(lines) + "\n"
