"""The statutory report to the National Crime Agency (Online Safety Act 2023, s.66). Pure.

Checked against legislation.gov.uk through the search tool's stored copies (2026-12-08): SI
2026/268 is "The Online Safety (CSEA Content Reporting by Regulated User-to-User Service
Providers) Regulations 2026", made 9 March 2026, in force 7 April 2026, under ss.67 and 224 of
the Act; its regulation 2 defines "connections with other accounts", "IP address" and "port
number" (https://www.legislation.gov.uk/uksi/2026/268/regulation/2/made). Schedule 1's items,
the priority tiers and the retention periods below are the issue's reading of the regulations:
no stored copy of those parts was found, so they are **our reading, unverified**.

Who reports (our reading): a regulated service whose directory entry lists `nca` in
`reports_to`. A UK organisation reports all CSEA content it detects; a non-UK organisation only
UK-linked content. **UK-linked**, from what a flag carries: the child's location is in the UK
(`child.location.country`), or the reported account is (`subject.country` or
`subject.location.country`). Nothing else on a flag places a person: an IP address is not
geolocated here, and a UK user's content elsewhere is not known.

What is reported: CSEA content, that is grooming, coercion or blackmail (sextortion) and
indecent images of children. A child's safety otherwise (self-harm, other serious harm) is not
CSEA content: it goes to the police, not the NCA.
"""

from dataclasses import dataclass

from schemas.flag import ModerationFlag
from schemas.packets import NcaTier
from schemas.referral import Criterion, DestinationKind, Priority
from services.domain.mechanisms import UK
from services.domain.organisations import Organisation

CSEA_CRITERIA = frozenset({Criterion.GROOMING, Criterion.COERCION, Criterion.IIOC})
"""The criteria that make CSEA content (our reading of s.59 and Schedules 6 of the Act)."""

TIERS: dict[Priority, NcaTier] = {
    Priority.P0: NcaTier.IMMEDIATELY,
    Priority.P1: NcaTier.IMMEDIATELY,
    Priority.P2: NcaTier.AS_SOON_AS_REASONABLY_PRACTICABLE,
    Priority.P3: NcaTier.WITHOUT_UNDUE_DELAY,
}

TIER_WORDS: dict[NcaTier, str] = {
    NcaTier.IMMEDIATELY: "immediately (a risk to a child's life or of serious harm)",
    NcaTier.AS_SOON_AS_REASONABLY_PRACTICABLE: "as soon as reasonably practicable",
    NcaTier.WITHOUT_UNDUE_DELAY: "without undue delay",
}

NCA_NAME = "National Crime Agency (NCA)"
NCA_WEBSITE = "https://www.nationalcrimeagency.gov.uk"


def tier(priority: Priority) -> NcaTier:
    """The NCA priority tier for our priority."""
    return TIERS[priority]


def uk_links(flag: ModerationFlag) -> list[str]:
    """Why the flag's content is UK-linked, in the words `NcaService.in_scope_because` uses;
    empty when it is not."""
    links = []
    child = flag.child.location if flag.child else None
    if child is not None and child.country == UK:
        links.append("child_in_uk")
    subject = flag.subject
    if subject.country == UK or (subject.location is not None and subject.location.country == UK):
        links.append("subject_in_uk")
    return links


def in_scope_because(flag: ModerationFlag, organisation: Organisation | None) -> list[str]:
    """Why the organisation must report the flag to the NCA; empty when it need not: it is not a
    regulated service (no `nca` in its `reports_to`), or it is outside the UK and the flag's
    content is not UK-linked."""
    if organisation is None or DestinationKind.NCA not in organisation.reports_to:
        return []
    if organisation.country == UK:
        return ["uk_service"]
    return uk_links(flag)


@dataclass(frozen=True, slots=True)
class Item:
    """One item of Schedule 1 (our reading): its id and what it asks for."""

    item: str
    asks_for: str


SCHEDULE_1: tuple[Item, ...] = (
    Item("reporter", "the reporter and who to contact about the report"),
    Item("content_and_detection", "the content and how it was detected"),
    Item("service", "the service the content was on"),
    Item("earlier_reports", "earlier reports of it and their NCA references"),
    Item("upload_time", "when the content was uploaded"),
    Item("upload_ip", "the IP address it was uploaded from"),
    Item("upload_port", "the port number it was uploaded from"),
    Item("url", "where the content is (its URL)"),
    Item("hashes", "hash values of the content"),
    Item("account_identifiers", "identifiers of the user's account"),
    Item("login_ips", "IP addresses the user logged in from"),
    Item("connected_accounts", "accounts connected with the user's"),
    Item("declaration", "a declaration that all information reasonably available is given"),
)
"""In the issue's order. The values are the packet's own fields (`NcaPacket`)."""
