"""Building case packets from the tasks of a case. Pure: metadata in, metadata out."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from schemas.flag import MediaType, ModerationFlag, SignalCategory
from schemas.packets import (
    Authority,
    ChildKnown,
    ContentReference,
    IwfItem,
    IwfPacket,
    Organisation,
    Packet,
    PolicePacket,
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
from services.domain.forces import ForceDirectory
from services.domain.mechanisms import LOCAL_POLICE, MECHANISM_CONTACTS

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


def authority(destination: Destination, priority: Priority, directory: ForceDirectory) -> Authority:
    """Who receives the packet, and what the person sending it must do."""
    if destination.kind is DestinationKind.IWF:
        return Authority(
            kind="iwf",
            id="iwf",
            name=IWF_NAME,
            website=IWF_WEBSITE,
            instruction="Report the URLs and hashes through the IWF reporting service.",
        )
    if destination.kind is DestinationKind.INTL:
        mechanism = destination.mechanism or LOCAL_POLICE
        name, website = MECHANISM_CONTACTS.get(mechanism, MECHANISM_CONTACTS[LOCAL_POLICE])
        if mechanism == LOCAL_POLICE or mechanism not in MECHANISM_CONTACTS:
            # The country is the destination's: the child's for an emergency, else the platform's.
            name = f"{name} in {destination.country}"
        return Authority(
            kind="intl",
            id=mechanism,
            name=name,
            website=website,
            instruction=(
                "A child may be in immediate danger: call the local emergency number now, then "
                "report through this mechanism."
                if priority is Priority.P0
                else "Report through this mechanism; call the local emergency number if a "
                "child is in immediate danger."
            ),
        )
    force = directory.forces.get(destination.force_id or "")
    if force is None:
        # The router knew a force this directory does not (a newer directory upstream): keep the
        # referral, and tell the person sending it to confirm the force.
        return Authority(
            kind="police",
            id=destination.force_id or "unknown",
            name=f"Police force '{destination.force_id}' (not in this service's directory)",
            phone="999" if priority is Priority.P0 else "101",
            instruction="Confirm the child's local police force, then call "
            + ("999 now." if priority is Priority.P0 else "101 and quote the case id."),
        )
    instruction = (
        "A child is in immediate danger: call 999 now, then send this packet."
        if priority is Priority.P0
        else "Call 101 or use the force's online reporting, and quote the case id."
    )
    return Authority(
        kind="police",
        id=force.force_id,
        name=force.name,
        phone=force.phone,
        website=force.website,
        instruction=instruction,
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
    rules: list[FiredRule] = []
    for task in tasks:
        rules.extend(rule for rule in task.rules if rule not in rules)
    latest = flags[-1]
    ips = list(dict.fromkeys(ip for f in flags for ip in f.subject.ips))
    children = _children(flags)
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
    first, last = flags[0].detected_at, flags[-1].detected_at
    summary = (
        f"Suspected {', '.join(criteria)} on {latest.platform.service}, reported by "
        f"{reporter.name}: {len(flags) + (totals.omitted if totals else 0)} flag(s) detected "
        f"between {first.isoformat()} and "
        f"{last.isoformat()}. Priority {priority.value}."
    )
    if supplement is not None:
        summary = (
            f"Supplementary to the referral sent as {supplement.external_reference} "
            f"(packet version {supplement.supplements_version}): "
            f"{len(supplement.new_flag_ids)} new flag(s). " + summary
        )
    return PolicePacket(
        case_id=case_id,
        version=version,
        built_at=now,
        authority=authority(destination, priority, directory),
        organisation=reporter.organisation(latest.platform.org_id),
        priority=priority,
        summary=summary,
        criteria=criteria,
        rules=rules,
        timeline=[
            TimelineEntry(
                at=t.detected_at,
                flag_id=t.flag_id,
                decision=t.decision,
                source=t.flag.source.system,
                source_kind=t.flag.source.kind.value,
                criteria=t.criteria,
                priority=t.priority,
            )
            for t in sorted(tasks, key=lambda t: (t.detected_at, str(t.flag_id)))
        ],
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
        children=children,
        content=list(content.values()),
        supplement=supplement,
        flags_omitted=totals.omitted if totals else 0,
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
        authority=authority(destination, priority, directory),
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
