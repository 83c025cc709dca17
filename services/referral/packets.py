"""Building case packets from the tasks of a case. Pure: metadata in, metadata out."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from schemas.flag import MediaType, ModerationFlag, SignalCategory
from schemas.packets import (
    NSPCC_GUIDANCE,
    Authority,
    ChildKnown,
    ContentReference,
    IwfItem,
    IwfPacket,
    Organisation,
    Packet,
    PolicePacket,
    SignalSeen,
    SubjectIdentifiers,
    Supplement,
    TimelineEntry,
)
from schemas.referral import (
    Criterion,
    Destination,
    DestinationKind,
    FiredRule,
    Priority,
    ReferralTask,
)
from services.domain.countries import COUNTRIES, country_name
from services.domain.forces import ForceDirectory
from services.domain.mechanisms import LOCAL_POLICE, MECHANISM_CONTACTS, UK
from services.referral import packet_words as words

IWF_NAME = "Internet Watch Foundation"
IWF_WEBSITE = "https://report.iwf.org.uk"
UK_EMERGENCY = COUNTRIES[UK].emergency


@dataclass(frozen=True, slots=True)
class Reporter:
    """The reporting organisation as it appears on packets (from configuration)."""

    name: str
    safeguarding_contact: str
    safeguarding_email: str | None = None

    def organisation(self, org_id: str) -> Organisation:
        return Organisation(
            org_id=org_id,
            name=self.name,
            safeguarding_contact=self.safeguarding_contact,
            safeguarding_email=self.safeguarding_email,
        )


@dataclass(frozen=True, slots=True)
class Totals:
    """What a packet says of all the flags of a version when it lists only the latest of them:
    the most urgent priority and every criterion among them, and how many it leaves out."""

    priority: Priority
    criteria: frozenset[Criterion]
    omitted: int


def authority(
    destination: Destination,
    priority: Priority,
    directory: ForceDirectory,
    *,
    supplement: Supplement | None = None,
    sender_country: str | None = None,
) -> Authority:
    """Who receives the packet, and what the person sending it must do.

    `supplement`: the packet adds to one already sent, so the action quotes that reference
    instead of starting a new report. `sender_country`: where the organisation is; when the
    police to call are in another country, the action says how to reach them from there.
    """
    reference = supplement.external_reference if supplement else None
    if destination.kind is DestinationKind.IWF:
        return _iwf(priority, reference)
    if destination.kind is DestinationKind.INTL:
        return _abroad(destination, priority, reference, sender_country)
    return _uk_police(destination, priority, directory, reference)


def _iwf(priority: Priority, reference: str | None) -> Authority:
    report = (
        f"Report the new URLs and hashes through the IWF reporting service, quoting the earlier "
        f"report {reference}."
        if reference
        else "Report the URLs and hashes through the IWF reporting service."
    )
    if priority is Priority.P0:
        report = (
            f"A child may be in immediate danger: call {UK_EMERGENCY} first (the IWF is not an "
            f"emergency service). Then {report[0].lower()}{report[1:]}"
        )
    return Authority(
        kind="iwf",
        id="iwf",
        name=IWF_NAME,
        website=IWF_WEBSITE,
        instruction=report,
        police=False,
        country=UK,
        country_name=COUNTRIES[UK].name,
        emergency_number=UK_EMERGENCY,
    )


def _uk_police(
    destination: Destination, priority: Priority, directory: ForceDirectory, reference: str | None
) -> Authority:
    force = directory.forces.get(destination.force_id or "")
    urgent = priority is Priority.P0
    # Police forces file what follows a report under the reference they gave it: the caller
    # quotes it on 101 to reach the officer dealing with it (victimandwitnessinformation.org.uk,
    # "The reporting process"), so a supplement must not read as a new report.
    if urgent:
        quote = f" and quote {reference}" if reference else ""
        send = "send this packet to the force" + (
            " as further information for that reference" if reference else ""
        )
        call = f"A child is in immediate danger: call {UK_EMERGENCY} now{quote}"
        instruction = (
            f"{call}, then {send}."
            if force
            else f"{call}. Confirm the child's local police force, then {send}."
        )
    else:
        report = (
            f"call 101 or use the force's online reporting, quote {reference} and send this "
            "packet as further information for it, not as a new report."
            if reference
            else "call 101 or use the force's online reporting, and quote the case id."
        )
        instruction = (
            report[0].upper() + report[1:]
            if force
            else f"Confirm the child's local police force, then {report}"
        )
    if force is None:
        # The router knew a force this directory does not (a newer directory upstream): keep the
        # referral, and tell the person sending it to confirm the force.
        force_id = destination.force_id or "unknown"
        name = f"Police force '{destination.force_id}' (not in this service's directory)"
        phone, website = "101", None
    else:
        force_id, name, phone, website = force.force_id, force.name, force.phone, force.website
    return Authority(
        kind="police",
        id=force_id,
        name=name,
        phone=UK_EMERGENCY if urgent else phone,
        website=website,
        instruction=instruction,
        police=True,
        country=UK,
        country_name=COUNTRIES[UK].name,
        emergency_number=UK_EMERGENCY,
    )


def _abroad(
    destination: Destination,
    priority: Priority,
    reference: str | None,
    sender_country: str | None,
) -> Authority:
    code = destination.country or ""
    country = COUNTRIES.get(code)
    where = country_name(code)
    number = country.emergency if country else None
    mechanism = destination.mechanism or LOCAL_POLICE
    known = mechanism != LOCAL_POLICE and mechanism in MECHANISM_CONTACTS
    urgent = priority is Priority.P0
    # The receiver, its country and the number are on the packet's TO lines: the action names
    # them again only as far as a sentence needs, so it fits whatever the names and reference.
    quoting = f", quoting the earlier report {reference}" if reference else ""
    call = f"call the police on {number}" if number else "call the local emergency number"
    if known:
        name, website = MECHANISM_CONTACTS[mechanism]
        police_first = (
            f"call the police first ({number} in {where})"
            if number
            else f"call the police in {where} first"
        )
        instruction = (
            f"A child may be in immediate danger: {police_first}, then report through their "
            f"service{quoting}."
            if urgent
            else f"Report through their service{quoting}. It is not an emergency service: if a "
            f"child is in immediate danger, {police_first}."
        )
    else:
        # No mechanism, or one this service does not know (a newer table upstream): the country's
        # police. The country is the destination's: the child's for an emergency, else the
        # platform's.
        name, website = f"The local police in {where}", None
        # A number dialled from another country reaches that country's services, not these.
        outside = (
            f" (from outside {where}: your own police)"
            if sender_country and sender_country != code
            else ""
        )
        instruction = (
            f"A child may be in immediate danger: {call} now{outside}, then give them this "
            f"packet{f', quoting {reference}' if reference else ''}."
            if urgent
            else f"Report to them{quoting}. If a child is in immediate danger, {call} at "
            f"once{outside}."
        )
    return Authority(
        kind="intl",
        id=mechanism,
        name=name,
        phone=number if urgent and not known else None,
        website=website,
        instruction=instruction,
        police=not known,
        country=code or None,
        country_name=country.name if country else None,
        emergency_number=number,
    )


def _flags(tasks: Sequence[ReferralTask]) -> list[ModerationFlag]:
    seen: dict[UUID, ModerationFlag] = {}
    for task in sorted(tasks, key=lambda t: (t.detected_at, str(t.flag_id))):
        seen.setdefault(task.flag_id, task.flag)
    return list(seen.values())


def _children(flags: Sequence[ModerationFlag]) -> list[ChildKnown]:
    """What the flags say of each child: one entry per child account, its details merged."""
    known: dict[object, ChildKnown] = {}
    for f in flags:
        if f.child is None:
            continue
        location = f.child.location
        child = ChildKnown(
            account_id=f.child.account_id,
            age_band=f.child.age_band,
            country=location.country if location else None,
            postcode_district=location.postcode_district if location else None,
        )
        key: object = child.account_id or child
        earlier = known.get(key)
        if earlier is not None:
            # The latest flag's details win; what only an earlier flag knew is kept.
            fields = child.model_dump(exclude_none=True)
            child = earlier.model_copy(update=fields)
        known[key] = child
    return list(known.values())


def _most_urgent(tasks: Sequence[ReferralTask]) -> Priority:
    order = list(Priority)
    return min((t.priority for t in tasks), key=order.index)


def _rules(tasks: Sequence[ReferralTask]) -> list[FiredRule]:
    """Every rule that fired, once: referrals before reviews, the most urgent first."""
    rules: list[FiredRule] = []
    for task in tasks:
        rules.extend(rule for rule in task.rules if rule not in rules)
    return words.referrals_first(rules)


def _summary(
    criteria: Sequence[Criterion],
    flags: Sequence[ModerationFlag],
    count: int,
    priority: Priority,
    reporter: Reporter,
    supplement: Supplement | None,
) -> str:
    findings = {s.category for f in flags for s in f.signals}
    suspected = words.listed(words.criterion(c, findings) for c in criteria)
    first, last = flags[0].detected_at, flags[-1].detected_at
    when = (
        f"detected at {words.at(first)}"
        if first == last
        else f"detected between {words.at(first)} and {words.at(last)}"
    )
    summary = (
        f"Suspected: {suspected}, on the service '{flags[-1].platform.service}' of "
        f"{reporter.name}. {words.counted(count, 'flag')}, {when}. Priority {priority.value}: "
        f"{words.PRIORITIES[priority]}."
    )
    if supplement is None:
        return summary
    new = words.counted(len(supplement.new_flag_ids), "new flag")
    return (
        f"Supplementary to the referral sent as {supplement.external_reference} (packet version "
        f"{supplement.supplements_version}): {new}. {summary}"
    )


def _timeline(tasks: Sequence[ReferralTask]) -> list[TimelineEntry]:
    return [
        TimelineEntry(
            at=t.detected_at,
            flag_id=t.flag_id,
            decision=t.decision,
            source=t.flag.source.system,
            source_kind=t.flag.source.kind.value,
            criteria=t.criteria,
            priority=t.priority,
            signals=[
                SignalSeen(
                    category=s.category,
                    label=s.label,
                    confidence=s.confidence,
                    immediate_danger=s.immediate_danger,
                )
                for s in t.flag.signals
            ],
        )
        for t in sorted(tasks, key=lambda t: (t.detected_at, str(t.flag_id)))
    ]


def build_police_packet(
    *,
    case_id: UUID,
    version: int,
    destination: Destination,
    tasks: Sequence[ReferralTask],
    reporter: Reporter,
    directory: ForceDirectory,
    now: datetime,
    supplement: Supplement | None = None,
    totals: Totals | None = None,
) -> PolicePacket:
    flags = _flags(tasks)
    priority = totals.priority if totals else _most_urgent(tasks)
    criteria = sorted(totals.criteria if totals else {c for t in tasks for c in t.criteria})
    latest = flags[-1]
    ips = list(dict.fromkeys(ip for f in flags for ip in f.subject.ips))
    content: dict[str, ContentReference] = {}
    for f in flags:
        for c in f.content:
            content.setdefault(
                c.content_id,
                ContentReference(
                    content_id=c.content_id,
                    media_type=c.media_type,
                    url=c.url,
                    public=c.public,
                    hashes=c.hashes,
                    uploaded_at=c.uploaded_at,
                    uploader_ip=c.uploader_ip,
                    flag_id=f.flag_id,
                ),
            )
    count = len(flags) + (totals.omitted if totals else 0)
    abroad = destination.kind is DestinationKind.INTL
    return PolicePacket(
        case_id=case_id,
        version=version,
        built_at=now,
        authority=authority(
            destination,
            priority,
            directory,
            supplement=supplement,
            sender_country=latest.platform.country,
        ),
        organisation=reporter.organisation(latest.platform.org_id),
        priority=priority,
        summary=_summary(criteria, flags, count, priority, reporter, supplement),
        criteria=criteria,
        rules=_rules(tasks),
        timeline=_timeline(tasks),
        subject=SubjectIdentifiers(
            account_id=latest.subject.account_id,
            username=latest.subject.username,
            ips=ips,
            country=latest.subject.country,
            postcode_district=next(
                (
                    f.subject.location.postcode_district
                    for f in reversed(flags)
                    if f.subject.location and f.subject.location.postcode_district
                ),
                None,
            ),
        ),
        children=_children(flags),
        content=list(content.values()),
        supplement=supplement,
        flags_omitted=totals.omitted if totals else 0,
        # The NSPCC's helpline (and its "call 999") is for a sender in the UK reporting there.
        support=None if abroad else NSPCC_GUIDANCE,
    )


def build_iwf_packet(
    *,
    case_id: UUID,
    version: int,
    destination: Destination,
    tasks: Sequence[ReferralTask],
    reporter: Reporter,
    directory: ForceDirectory,
    now: datetime,
    supplement: Supplement | None = None,
    totals: Totals | None = None,
) -> IwfPacket:
    items: dict[str, IwfItem] = {}
    for f in _flags(tasks):
        lists = sorted(
            {
                s.hash_match.list
                for s in f.signals
                if s.category is SignalCategory.IIOC and s.hash_match is not None
            }
        )
        for c in f.content:
            if c.media_type not in (MediaType.IMAGE, MediaType.VIDEO):
                continue
            items.setdefault(
                c.content_id,
                IwfItem(
                    content_id=c.content_id,
                    media_type=c.media_type,
                    url=c.url,
                    publicly_reachable=c.public,
                    hashes=c.hashes,
                    first_seen_at=c.uploaded_at or f.detected_at,
                    hash_lists=lists,
                ),
            )
    priority = totals.priority if totals else _most_urgent(tasks)
    return IwfPacket(
        case_id=case_id,
        version=version,
        built_at=now,
        authority=authority(destination, priority, directory, supplement=supplement),
        organisation=reporter.organisation(tasks[0].flag.platform.org_id),
        priority=priority,
        items=list(items.values()),
        supplement=supplement,
        flags_omitted=totals.omitted if totals else 0,
    )


def build_packet(
    *,
    case_id: UUID,
    version: int,
    destination: Destination,
    tasks: Sequence[ReferralTask],
    reporter: Reporter,
    directory: ForceDirectory,
    now: datetime,
    supplement: Supplement | None = None,
    totals: Totals | None = None,
) -> Packet:
    """The packet for a case's destination, from the tasks attached to the case (or the latest of
    them, with `totals` over all of them)."""
    build = build_iwf_packet if destination.kind is DestinationKind.IWF else build_police_packet
    return build(
        case_id=case_id,
        version=version,
        destination=destination,
        tasks=tasks,
        reporter=reporter,
        directory=directory,
        now=now,
        supplement=supplement,
        totals=totals,
    )
