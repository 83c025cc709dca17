"""Building case packets from the tasks of a case. Pure: metadata in, metadata out."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any
from uuid import UUID

from schemas.flag import MediaType, ModerationFlag, SignalCategory
from schemas.packets import (
    NSPCC_AFTER_EMERGENCY,
    NSPCC_GUIDANCE,
    Authority,
    ChildKnown,
    ContentReference,
    EarlierReport,
    IwfItem,
    IwfPacket,
    NcaPacket,
    NcaService,
    Organisation,
    Packet,
    PolicePacket,
    ScheduleItem,
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
from services.domain.countries import COUNTRIES, UK_EMERGENCY, country_name
from services.domain.forces import ForceDirectory
from services.domain.mechanisms import LOCAL_POLICE, MECHANISM_CONTACTS, UK
from services.domain.nca import NCA_NAME, NCA_WEBSITE, SCHEDULE_1, TIER_WORDS, tier, uk_links
from services.referral import packet_words as words

IWF_NAME = "Internet Watch Foundation"
IWF_WEBSITE = "https://report.iwf.org.uk"


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


@dataclass(frozen=True, slots=True)
class _Caller:
    """The person sending the packet, when they are in another country than the receiver: a
    number dialled there reaches that country's services, not the receiver's."""

    where: str
    number: str | None


def _caller(sender_country: str | None, receiver_country: str | None) -> _Caller | None:
    if not sender_country or not receiver_country or sender_country == receiver_country:
        return None
    country = COUNTRIES.get(sender_country)
    return _Caller(country_name(sender_country), country.dial if country else None)


def _call(
    number: str | None, where: str, caller: _Caller | None, *, when: str, police_on: bool = False
) -> str:
    """The emergency call in a sentence: `call 999 now`, `call the police on 911 now`; from
    another country, the caller's own number, and their police to contact the receiver's."""
    if caller is None:
        if number is None:
            return f"call the local emergency number {when}"
        return f"call the police on {number} {when}" if police_on else f"call {number} {when}"
    own = (
        f"call {caller.number}, your emergency number in {caller.where}, {when}"
        if caller.number
        else f"call your own emergency number {when}"
    )
    there = f" ({number} there)" if number else ""
    return f"{own}, and ask your police to contact the police in {where}{there}"


def _sender(sender_country: str | None) -> dict[str, str | None]:
    """The sender's country and number, for the packet's authority."""
    country = COUNTRIES.get(sender_country or "")
    return {
        "sender_country": sender_country,
        "sender_country_name": country.name if country else None,
        "sender_emergency_number": country.dial if country else None,
    }


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
    instead of starting a new report; when the case was a P0 and the supplement adds no P0
    (`Supplement.new_priority`), it was already reported as an emergency, and the action says
    so instead of asking for another emergency call. `sender_country`: where the organisation
    is; when the receiver is in another country, the emergency call is to the sender's own
    number, asking their police to contact the receiver's.
    """
    reference = supplement.external_reference if supplement else None
    new = supplement.new_priority if supplement else None
    reported = priority is Priority.P0 and new is not None and new is not Priority.P0
    match destination.kind:
        case DestinationKind.IWF:
            who = _iwf(priority, reference, reported, _caller(sender_country, UK))
        case DestinationKind.INTL:
            caller = _caller(sender_country, destination.country)
            who = _abroad(destination, priority, reference, reported, caller)
        case DestinationKind.POLICE:
            caller = _caller(sender_country, UK)
            who = _uk_police(destination, priority, directory, reference, reported, caller)
        case DestinationKind.NCA:
            who = _nca(priority, reference, reported, _caller(sender_country, UK))
    return who.model_copy(update=_sender(sender_country)) if sender_country else who


def _iwf(
    priority: Priority, reference: str | None, reported: bool, caller: _Caller | None
) -> Authority:
    report = (
        f"Report the new URLs and hashes through the IWF reporting service, quoting the earlier "
        f"report {reference}."
        if reference
        else "Report the URLs and hashes through the IWF reporting service."
    )
    where = COUNTRIES[UK].name
    if reported:
        again = _call(UK_EMERGENCY, where, caller, when="again")
        report += f" If a child is in danger now, {again} (the IWF is not an emergency service)."
    elif priority is Priority.P0:
        call = _call(UK_EMERGENCY, where, caller, when="now")
        report = (
            f"A child may be in immediate danger: {call} (the IWF is not an emergency service). "
            f"Then {report[0].lower()}{report[1:]}"
        )
    return Authority(
        kind="iwf",
        id="iwf",
        name=IWF_NAME,
        website=IWF_WEBSITE,
        instruction=report,
        police=False,
        country=UK,
        country_name=where,
        emergency_number=UK_EMERGENCY,
    )


def _nca(
    priority: Priority, reference: str | None, reported: bool, caller: _Caller | None
) -> Authority:
    """The NCA: a statutory report through its portal or API, within its tier's time. It is
    not an emergency service: a child in danger now is a 999 call first."""
    when = TIER_WORDS[tier(priority)].split(" (")[0]
    quoting = f", quoting the earlier NCA reference {reference}" if reference else ""
    report = f"Report to the NCA through its reporting portal or API{quoting}, {when}."
    where = COUNTRIES[UK].name
    if reported:
        again = _call(UK_EMERGENCY, where, caller, when="again")
        report = (
            f"Already reported as an emergency under {reference}: report the new flags to the "
            f"NCA, quoting it. If a child is in danger now, {again} (the NCA's reporting is not "
            "an emergency service)."
        )
    elif priority is Priority.P0:
        call = _call(UK_EMERGENCY, where, caller, when="now")
        report = (
            f"A child may be in immediate danger: {call} (the NCA's reporting is not an "
            f"emergency service). Then {report[0].lower()}{report[1:]}"
        )
    else:
        report += (
            " It is not an emergency service: if a child is in immediate danger, "
            f"{_call(UK_EMERGENCY, where, caller, when='now')}."
        )
    return Authority(
        kind="nca",
        id="nca",
        name=NCA_NAME,
        website=NCA_WEBSITE,
        instruction=report,
        police=False,
        country=UK,
        country_name=where,
        emergency_number=UK_EMERGENCY,
    )


def _uk_police(
    destination: Destination,
    priority: Priority,
    directory: ForceDirectory,
    reference: str | None,
    reported: bool,
    caller: _Caller | None,
) -> Authority:
    force = directory.forces.get(destination.force_id or "")
    where = COUNTRIES[UK].name
    urgent = priority is Priority.P0 and not reported
    confirm = "" if force else "Confirm the child's local police force, then "
    # 101 and 999 work only within the UK: a sender abroad reports online, and calls their own
    # emergency number.
    report = (
        "call 101 or use the force's online reporting"
        if caller is None
        else ("use the force's online reporting (101 works only in the UK)")
    )
    # Police forces file what follows a report under the reference they gave it: the caller
    # quotes it on 101 to reach the officer dealing with it (victimandwitnessinformation.org.uk,
    # "The reporting process"), so a supplement must not read as a new report.
    if urgent:
        quote = f" and quote {reference}" if reference else ""
        send = "send this packet to the force" + (
            " as further information for that reference" if reference else ""
        )
        call = _call(UK_EMERGENCY, where, caller, when="now")
        instruction = (
            f"A child may be in immediate danger: {call}{quote}. {confirm or 'Then '}{send}."
        )
    elif reported:
        again = _call(UK_EMERGENCY, where, caller, when="again")
        instruction = (
            f"Already reported as an emergency under {reference}: {confirm.lower()}{report}, "
            f"quote it and send this packet as further information. If a child is in danger "
            f"now, {again}."
        )
    else:
        quoted = (
            f", quote {reference} and send this packet as further information for it, not as a "
            "new report."
            if reference
            else ", and quote the case id."
        )
        instruction = (
            f"{confirm}{report}{quoted}" if confirm else f"{words.capital(report)}{quoted}"
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
        country_name=where,
        emergency_number=UK_EMERGENCY,
    )


def _abroad(
    destination: Destination,
    priority: Priority,
    reference: str | None,
    reported: bool,
    caller: _Caller | None,
) -> Authority:
    code = destination.country or ""
    country = COUNTRIES.get(code)
    where = country_name(code)
    number = country.dial if country else None
    mechanism = destination.mechanism or LOCAL_POLICE
    known = mechanism != LOCAL_POLICE and mechanism in MECHANISM_CONTACTS
    urgent = priority is Priority.P0 and not reported
    # The receiver, its country and the number are on the packet's TO lines: the action names
    # them again only as far as a sentence needs, so it fits whatever the names and reference.
    quoting = f", quoting the earlier report {reference}" if reference else ""
    again = _call(number, where, caller, when="again", police_on=True)
    already = f"Already reported as an emergency under {reference}: "
    if known:
        name, website = MECHANISM_CONTACTS[mechanism]
        if caller is None:
            police_first = (
                f"call the police first ({number} in {where})"
                if number
                else f"call the police in {where} first"
            )
        else:
            police_first = _call(number, where, caller, when="first")
        if urgent:
            instruction = (
                f"A child may be in immediate danger: {police_first}, then report through their "
                f"service{quoting}."
            )
        elif reported:
            instruction = (
                f"{already}report the new flags through their service, quoting it. It is not an "
                f"emergency service: if a child is in danger now, {again}."
            )
        else:
            instruction = (
                f"Report through their service{quoting}. It is not an emergency service: if a "
                f"child is in immediate danger, {police_first}."
            )
    else:
        # No mechanism, or one this service does not know (a newer table upstream): the country's
        # police. The country is the destination's: the child's for an emergency, else the
        # platform's.
        name, website = f"The local police in {where}", None
        call = _call(number, where, caller, when="now", police_on=True)
        give = "give them this packet" if caller is None else "give this packet to your police"
        if urgent:
            instruction = (
                f"A child may be in immediate danger: {call}. Then {give}"
                f"{f', quoting {reference}' if reference else ''}."
            )
        elif reported:
            instruction = (
                f"{already}{give} as further information, quoting it. If a child is in danger "
                f"now, {again}."
            )
        else:
            at_once = _call(number, where, caller, when="at once", police_on=True)
            instruction = f"Report to them{quoting}. If a child is in immediate danger, {at_once}."
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
        emergency_also=country.also if country else None,
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
    rules: Sequence[FiredRule],
    timeline: Sequence[TimelineEntry],
    flags: Sequence[ModerationFlag],
    count: int,
    priority: Priority,
    reporter: Reporter,
    supplement: Supplement | None,
) -> str:
    suspected = words.listed(words.criteria_words(criteria, rules, timeline))
    first, last = flags[0].detected_at, flags[-1].detected_at
    when = (
        f"detected at {words.at(first)}"
        if first == last
        else f"detected between {words.at(first)} and {words.at(last)}"
    )
    raised = next((e.escalation for e in words.raising(timeline, priority)), None)
    by = f", raised across its flags by the policy's escalation {raised}" if raised else ""
    summary = (
        f"Suspected: {suspected}, on the service '{flags[-1].platform.service}' of "
        f"{reporter.name}. {words.counted(count, 'flag')}, {when}. Priority {priority.value}"
        f"{by}: {words.PRIORITIES[priority]}."
    )
    if supplement is None:
        return summary
    new = words.counted(len(supplement.new_flag_ids), "new flag")
    return (
        f"Supplementary to the referral sent as {supplement.external_reference} (packet version "
        f"{supplement.supplements_version}): {new}. {summary}"
    )


def _timeline(tasks: Sequence[ReferralTask], reviewed_at: datetime | None) -> list[TimelineEntry]:
    """One entry per task, oldest first; an escalation after the flag that completed it. A
    review routed before a person approved the case reads as confirmed by them."""
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
            confirmed_at=(
                reviewed_at
                if t.decision == "review" and reviewed_at and t.routed_at <= reviewed_at
                else None
            ),
            escalation=t.escalation,
            escalated_from=t.escalated_from,
            held=t.held,
        )
        for t in sorted(
            tasks,
            key=lambda t: (
                t.detected_at,
                t.escalation is not None,
                list(Priority).index(t.priority),
                str(t.flag_id),
            ),
        )
    ]


def _supplement(supplement: Supplement | None, tasks: Sequence[ReferralTask]) -> Supplement | None:
    """The supplement with the most urgent priority its new flags (and the escalations they
    completed) brought."""
    if supplement is None:
        return None
    new = set(supplement.new_flag_ids)
    order = list(Priority)
    priority = min((t.priority for t in tasks if t.flag_id in new), key=order.index, default=None)
    return supplement.model_copy(update={"new_priority": priority})


def _support(sender_country: str, priority: Priority) -> str | None:
    """The NSPCC's helpline, for a sender in the UK (whoever receives the packet); after the
    emergency call on a P0."""
    if sender_country != UK:
        return None
    return NSPCC_AFTER_EMERGENCY if priority is Priority.P0 else NSPCC_GUIDANCE


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
    reviewed_at: datetime | None = None,
    earlier_reports: Sequence[EarlierReport] = (),
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
    # Flags, not tasks: an escalation is not one more flag.
    count = len(flags) + (totals.omitted if totals else 0)
    supplement = _supplement(supplement, tasks)
    rules = _rules(tasks)
    timeline = _timeline(tasks, reviewed_at)
    sender = latest.platform.country
    return PolicePacket(
        case_id=case_id,
        version=version,
        built_at=now,
        authority=authority(
            destination, priority, directory, supplement=supplement, sender_country=sender
        ),
        organisation=reporter.organisation(latest.platform.org_id),
        priority=priority,
        summary=_summary(criteria, rules, timeline, flags, count, priority, reporter, supplement),
        criteria=criteria,
        rules=rules,
        timeline=timeline,
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
        earlier_reports=list(earlier_reports),
        flags_omitted=totals.omitted if totals else 0,
        support=_support(sender, priority),
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
    flags = _flags(tasks)
    items: dict[str, IwfItem] = {}
    for f in flags:
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
    # The latest flag's organisation and country, as on a police packet.
    latest = flags[-1]
    supplement = _supplement(supplement, tasks)
    return IwfPacket(
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
        items=list(items.values()),
        supplement=supplement,
        flags_omitted=totals.omitted if totals else 0,
        support=NSPCC_AFTER_EMERGENCY if priority is Priority.P0 else NSPCC_GUIDANCE,
    )


def _schedule_1(packet: NcaPacket) -> list[ScheduleItem]:
    """Each Schedule 1 item (our reading): where the packet holds it, or why it is not there."""
    content = packet.content
    given: dict[str, tuple[list[str], str | None]] = {
        "reporter": (["organisation"], None),
        "content_and_detection": (
            ["content", "timeline", "rules", "criteria"],
            "identifiers, hashes and what the platform's systems found; no content attached",
        ),
        "service": (["service"], None),
        "declaration": (["declaration"], None),
        "account_identifiers": (["subject"], None),
    }
    if packet.earlier_reports or packet.supplement:
        given["earlier_reports"] = (["earlier_reports", "supplement"], None)
    if any(c.uploaded_at for c in content):
        given["upload_time"] = (["content"], None)
    if any(c.uploader_ip for c in content):
        given["upload_ip"] = (["content"], None)
    if any(c.url for c in content):
        given["url"] = (["content"], None)
    if any(c.hashes.model_dump(exclude_none=True) for c in content):
        given["hashes"] = (["content"], None)
    if packet.subject.ips:
        given["login_ips"] = (
            ["subject"],
            "the IP addresses the platform gave for the account; the flags do not say which "
            "were used to log in",
        )
    if any(child.account_id for child in packet.children):
        given["connected_accounts"] = (
            ["children"],
            "the children's accounts the flags name; the flags hold no other connections",
        )
    missing = {
        "earlier_reports": "no earlier report of this subject is recorded by this service",
        "upload_time": "the flags give no upload time",
        "upload_ip": "the flags give no uploader IP address",
        "upload_port": "the flags carry no port number",
        "url": "the flags give no URL",
        "hashes": "the flags give no hash of the content",
        "login_ips": "the flags give no IP address for the account",
        "connected_accounts": "the flags name no connected account",
    }
    items = []
    for item in SCHEDULE_1:
        fields, note = given.get(item.item, ([], missing.get(item.item)))
        items.append(
            ScheduleItem(
                item=item.item,
                asks_for=item.asks_for,
                available=item.item in given,
                fields=fields,
                note=note,
            )
        )
    return items


def nca_packet(
    base: PolicePacket, tasks: Sequence[ReferralTask], earlier_reports: Sequence[EarlierReport]
) -> NcaPacket:
    """The statutory report to the NCA: what a police packet built for the NCA holds (reporter,
    detection, subject, connected accounts, content), with the service, the tier, the earlier
    reports of the subject, Schedule 1's items each given or named as not available, and the
    declaration."""
    flags = _flags(tasks)
    latest = flags[-1]
    country = latest.platform.country
    because = ["uk_service"] if country == UK else sorted({x for f in flags for x in uk_links(f)})
    packet = NcaPacket(
        case_id=base.case_id,
        version=base.version,
        built_at=base.built_at,
        authority=base.authority,
        organisation=base.organisation,
        service=NcaService(
            name=latest.platform.service,
            organisation_country=country,
            in_scope_because=because or ["listed_as_regulated"],
        ),
        priority=base.priority,
        tier=tier(base.priority),
        summary=base.summary,
        criteria=base.criteria,
        rules=base.rules,
        timeline=base.timeline,
        subject=base.subject,
        children=base.children,
        content=base.content,
        earlier_reports=list(earlier_reports),
        schedule_1=[],
        supplement=base.supplement,
        flags_omitted=base.flags_omitted,
        support=base.support,
    )
    return packet.model_copy(update={"schedule_1": _schedule_1(packet)})


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
    reviewed_at: datetime | None = None,
    earlier_reports: Sequence[EarlierReport] = (),
) -> Packet:
    """The packet for a case's destination, from the tasks attached to the case (or the latest of
    them, with `totals` over all of them).

    `reviewed_at`: when a person approved the case (review to ready), if one did: the flags held
    for review that were routed to it before then read as confirmed by that person.
    `earlier_reports`: the subject's reports already sent to the NCA or NCMEC from its other
    cases, which a packet to either names.
    """
    build: Callable[..., Packet]
    match destination.kind:
        case DestinationKind.IWF:
            build = build_iwf_packet
        case DestinationKind.NCA:

            def build(**given: Any) -> Packet:
                base = build_police_packet(**given, reviewed_at=reviewed_at)
                return nca_packet(base, tasks, earlier_reports)

        case _:
            build = partial(
                build_police_packet, reviewed_at=reviewed_at, earlier_reports=earlier_reports
            )
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
