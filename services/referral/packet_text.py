"""A packet as plain text: read down the phone, or pasted into a police or IWF web form. Pure."""

from datetime import UTC, datetime

from schemas.flag import ContentHashes
from schemas.packets import Authority, IwfPacket, Organisation, Packet, PolicePacket, Supplement
from schemas.referral import Priority

_HASH_NAMES = (
    ("md5", "MD5"),
    ("sha1", "SHA-1"),
    ("sha256", "SHA-256"),
    ("photodna", "PhotoDNA"),
    ("pdq", "PDQ"),
)


def _at(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _yes_no(value: bool | None) -> str:
    return "unknown" if value is None else ("yes" if value else "no")


def _hashes(hashes: ContentHashes, indent: str) -> list[str]:
    return [
        f"{indent}{label}: {getattr(hashes, field)}"
        for field, label in _HASH_NAMES
        if getattr(hashes, field) is not None
    ]


def _header(packet: Packet, title: str) -> list[str]:
    lines = [
        f"{title} · PRIORITY {packet.priority.value}",
        f"Case {packet.case_id} · packet version {packet.version} · built {_at(packet.built_at)}",
        "",
    ]
    if packet.priority is Priority.P0:
        lines = ["A CHILD MAY BE IN IMMEDIATE DANGER: CALL 999 NOW.", "", *lines]
    return lines


def _supplement(supplement: Supplement | None) -> list[str]:
    if supplement is None:
        return []
    return [
        f"SUPPLEMENTARY to packet version {supplement.supplements_version}, sent as "
        f"{supplement.external_reference} on {_at(supplement.submitted_at)}. "
        "Please file it with that referral.",
        "  New flags: " + ", ".join(str(f) for f in supplement.new_flag_ids),
        "",
    ]


def _omitted(count: int, case_id: object) -> list[str]:
    if not count:
        return []
    return [
        f"  ({count} earlier flag(s) of this case are not listed here; the case service lists "
        f"every flag of case {case_id})"
    ]


def _parties(authority: Authority, organisation: Organisation) -> list[str]:
    lines = [f"TO: {authority.name}"]
    if authority.phone:
        lines.append(f"  Phone: {authority.phone}")
    if authority.website:
        lines.append(f"  Website: {authority.website}")
    lines += [
        f"  ACTION: {authority.instruction}",
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
    return [
        "NO IMAGES ATTACHED",
        f"  {packet.no_images_attached}",
        f"  Safeguarding contact: {contact}",
        "",
        "SUPPORT",
        f"  {packet.support}",
    ]


def _police(packet: PolicePacket) -> list[str]:
    lines = _header(packet, "CSAE REFERRAL TO THE POLICE")
    lines += _supplement(packet.supplement)
    lines += _parties(packet.authority, packet.organisation)
    lines += ["SUMMARY", f"  {packet.summary}", ""]
    lines += ["CRITERIA: " + ", ".join(c.value for c in packet.criteria), ""]
    lines.append("WHY: THE RULES THAT FIRED")
    for rule in packet.rules:
        lines.append(
            f"  - {rule.rule_id} ({rule.outcome}, {rule.priority.value}, "
            + ", ".join(c.value for c in rule.criteria)
            + "): "
            + "; ".join(rule.matched)
        )
    lines += ["", "TIMELINE"]
    lines += _omitted(packet.flags_omitted, packet.case_id)
    for entry in packet.timeline:
        unconfirmed = (
            " (for review: not confirmed by a person)" if entry.decision == "review" else ""
        )
        criteria = ", ".join(c.value for c in entry.criteria)
        lines.append(
            f"  - {_at(entry.at)} flag {entry.flag_id}: {criteria}, {entry.priority.value}, "
            f"from {entry.source} ({entry.source_kind}){unconfirmed}"
        )
    subject = packet.subject
    lines += ["", "SUBJECT (the reported account)", f"  Account id: {subject.account_id}"]
    if subject.username:
        lines.append(f"  Username: {subject.username}")
    if subject.ips:
        lines.append("  IP addresses: " + ", ".join(str(ip) for ip in subject.ips))
    if subject.country:
        lines.append(f"  Country: {subject.country}")
    if subject.postcode_district:
        lines.append(f"  Postcode district: {subject.postcode_district}")
    lines += ["", "CHILDREN AT RISK, AS FAR AS KNOWN"]
    if not packet.children:
        lines.append("  None identified in the flags.")
    for child in packet.children:
        known = [
            f"account id {child.account_id}" if child.account_id else None,
            f"age band {child.age_band.value}" if child.age_band else None,
            f"country {child.country}" if child.country else None,
            f"postcode district {child.postcode_district}" if child.postcode_district else None,
        ]
        lines.append("  - " + (", ".join(k for k in known if k) or "no details known"))
    lines += ["", "CONTENT REFERENCES (identifiers only)"]
    if not packet.content:
        lines.append("  None.")
    for item in packet.content:
        lines.append(f"  - {item.content_id}: {item.media_type.value}, from flag {item.flag_id}")
        if item.url:
            lines.append(f"    URL: {item.url} (public: {_yes_no(item.public)})")
        if item.uploaded_at:
            lines.append(f"    Uploaded: {_at(item.uploaded_at)}")
        if item.uploader_ip:
            lines.append(f"    Uploader IP: {item.uploader_ip}")
        lines += _hashes(item.hashes, "    ")
    return [*lines, "", *_footer(packet)]


def _iwf(packet: IwfPacket) -> list[str]:
    lines = _header(packet, "REPORT TO THE INTERNET WATCH FOUNDATION")
    lines += _supplement(packet.supplement)
    lines += _parties(packet.authority, packet.organisation)
    lines.append(f"ITEMS ({len(packet.items)})")
    lines += _omitted(packet.flags_omitted, packet.case_id)
    for item in packet.items:
        lines += [
            f"  - {item.content_id}: {item.media_type.value}, first seen {_at(item.first_seen_at)}",
            f"    Publicly reachable: {_yes_no(item.publicly_reachable)}",
        ]
        if item.url:
            lines.append(f"    URL: {item.url}")
        lines += _hashes(item.hashes, "    ")
        if item.hash_lists:
            lines.append("    Matched hash lists: " + ", ".join(item.hash_lists))
    return [*lines, "", *_footer(packet)]


def render_text(packet: Packet) -> str:
    """The packet in plain text, every field a person needs in reading order."""
    lines = _iwf(packet) if isinstance(packet, IwfPacket) else _police(packet)
    return "\n".join(lines) + "\n"
