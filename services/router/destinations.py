"""Where a referral goes: the right UK police force, the IWF, or another country's mechanism.

- Organisation in the UK: one `police` destination, the force for the child's location (explicit
  force id, else postcode district or area), else the reported account's, else the organisation's
  home force; and `iwf` when the criteria include `iioc` and the images may be shared elsewhere.
- Organisation outside the UK: `intl`, the country's mechanism from `MECHANISMS` (sourced), else
  the local police. A P0 (a child at risk now) outside the UK also goes to the local police first:
  a hotline or clearing house is not an emergency service, the country's police is.
- A P0 whose child's country is known goes first to the police where the child is, wherever the
  organisation is: the UK force for the child's location when the child is in the UK, else that
  country's local police (`intl:<child's country>:local_police`); then to the organisation's
  destinations as above. Only the police where the child is can reach the child now.
"""

from dataclasses import dataclass

from schemas.flag import Location, ModerationFlag, SignalCategory
from schemas.referral import Criterion, Destination, DestinationKind
from services.router.forces import ForceDirectory

UK = "GB"
LOCAL_POLICE = "local_police"


@dataclass(frozen=True, slots=True)
class Mechanism:
    """A country's mechanism for reporting child sexual abuse and exploitation online."""

    mechanism: str
    name: str
    website: str
    source: str
    """Where the entry comes from: the mechanism's own page saying what it takes reports of."""


MECHANISMS_AS_OF = "2026-11-26"
"""When the table was written from its sources. Its entries were not fetched again that day (no
network where it was written): check an entry's source before relying on it, and date the check."""

# By the organisation's country (ISO 3166-1 alpha-2). Outside the US, Canada, Australia and New
# Zealand these are the national INHOPE member hotlines (inhope.org lists its members); a country
# without an entry falls back to the local police.
MECHANISMS: dict[str, Mechanism] = {
    "US": Mechanism(
        "ncmec_cybertipline",
        "NCMEC CyberTipline",
        "https://report.cybertip.org",
        "https://www.missingkids.org/gethelpnow/cybertipline",
    ),
    "CA": Mechanism(
        "cybertip_ca",
        "Cybertip.ca, Canadian Centre for Child Protection",
        "https://www.cybertip.ca",
        "https://www.cybertip.ca/en/report/",
    ),
    "AU": Mechanism(
        "accce",
        "Australian Centre to Counter Child Exploitation",
        "https://www.accce.gov.au/report",
        "https://www.accce.gov.au/report",
    ),
    "NZ": Mechanism(
        "nz_dia_dcet",
        "Department of Internal Affairs, Digital Child Exploitation Team",
        "https://www.dia.govt.nz",
        "https://www.dia.govt.nz/Preventing-Online-Child-Sexual-Exploitation-About-the-Digital-Child-Exploitation-Team",
    ),
    "IE": Mechanism("hotline_ie", "Hotline.ie", "https://hotline.ie", "https://hotline.ie"),
    "NL": Mechanism(
        "offlimits",
        "Offlimits (formerly EOKM)",
        "https://www.offlimits.nl",
        "https://www.offlimits.nl",
    ),
    "BE": Mechanism(
        "child_focus",
        "Child Focus (stopchildporno.be)",
        "https://stopchildporno.be",
        "https://stopchildporno.be",
    ),
    "DE": Mechanism(
        "internet_beschwerdestelle",
        "Internet-Beschwerdestelle (eco and FSM)",
        "https://www.internet-beschwerdestelle.de",
        "https://www.internet-beschwerdestelle.de",
    ),
    "FR": Mechanism(
        "point_de_contact",
        "Point de Contact",
        "https://www.pointdecontact.net",
        "https://www.pointdecontact.net",
    ),
    "AT": Mechanism(
        "stopline_at", "Stopline", "https://www.stopline.at", "https://www.stopline.at"
    ),
    "FI": Mechanism(
        "nettivihje",
        "Nettivihje, Save the Children Finland",
        "https://www.nettivihje.fi",
        "https://www.nettivihje.fi",
    ),
    "SE": Mechanism(
        "ecpat_se", "ECPAT Sweden hotline", "https://www.ecpat.se", "https://www.ecpat.se"
    ),
    "PL": Mechanism("dyzurnet", "Dyżurnet.pl", "https://dyzurnet.pl", "https://dyzurnet.pl"),
    "HU": Mechanism(
        "internet_hotline_hu",
        "Internet Hotline (NMHH)",
        "https://internethotline.hu",
        "https://internethotline.hu",
    ),
    "LU": Mechanism(
        "bee_secure_stopline",
        "BEE SECURE Stopline",
        "https://stopline.bee-secure.lu",
        "https://stopline.bee-secure.lu",
    ),
    "SI": Mechanism(
        "spletno_oko", "Spletno oko", "https://www.spletno-oko.si", "https://www.spletno-oko.si"
    ),
    "GR": Mechanism("safeline", "SafeLine", "https://www.safeline.gr", "https://www.safeline.gr"),
}

INTERNATIONAL_MECHANISMS: dict[str, str] = {
    country: entry.mechanism for country, entry in MECHANISMS.items()
}
"""Country → mechanism id."""

MECHANISM_CONTACTS: dict[str, tuple[str, str | None]] = {
    **{entry.mechanism: (entry.name, entry.website) for entry in MECHANISMS.values()},
    LOCAL_POLICE: ("The local police", None),
}
"""Mechanism id → (name, website), for packets."""


def _force_at(location: Location | None, directory: ForceDirectory) -> str | None:
    """The UK force for a location: its explicit force id, else its postcode district or area."""
    if location is None or location.country != UK:
        return None
    if location.force_id and location.force_id in directory.forces:
        return location.force_id
    if location.postcode_district:
        force = directory.for_postcode_district(location.postcode_district)
        if force is not None:
            return force.force_id
    return None


def unknown_force_ids(flag: ModerationFlag, directory: ForceDirectory) -> list[str]:
    """Explicit force ids on the flag's UK locations (child's, reported account's) that the
    directory does not know: they are passed over for the postcode, the router logs them."""
    locations = [flag.child.location if flag.child else None, flag.subject.location]
    return [
        location.force_id
        for location in locations
        if location is not None
        and location.country == UK
        and location.force_id is not None
        and location.force_id not in directory.forces
    ]


def police_force(flag: ModerationFlag, directory: ForceDirectory, home_force_id: str) -> str:
    """The force for the child's location, else the reported account's, else the home force."""
    return (
        _force_at(flag.child.location if flag.child else None, directory)
        or _force_at(flag.subject.location, directory)
        or home_force_id
    )


def may_be_shared_elsewhere(flag: ModerationFlag) -> bool:
    """Whether images on the flag may exist beyond the platform, so the IWF should assess them."""
    for signal in flag.signals:
        if signal.category is not SignalCategory.IIOC:
            continue
        if signal.shared_externally or (
            signal.hash_match is not None and signal.hash_match.external
        ):
            return True
    return any(content.url is not None and content.public for content in flag.content)


def emergency_route(
    flag: ModerationFlag, directory: ForceDirectory, home_force_id: str
) -> Destination | None:
    """The police where the child is, for a child at risk now; None when the country is unknown.

    A child in the UK: the force for the child's location (else the reported account's, else the
    home force: a UK force still takes the call and passes it on). Elsewhere: that country's
    local police.
    """
    location = flag.child.location if flag.child else None
    if location is None:
        return None
    if location.country == UK:
        return Destination(
            kind=DestinationKind.POLICE, force_id=police_force(flag, directory, home_force_id)
        )
    return Destination(kind=DestinationKind.INTL, mechanism=LOCAL_POLICE, country=location.country)


def plan(
    flag: ModerationFlag,
    criteria: tuple[Criterion, ...],
    directory: ForceDirectory,
    home_force_id: str,
    *,
    emergency: bool = False,
) -> list[Destination]:
    """The destinations for a flag referred or reviewed under `criteria`.

    `emergency` (a P0 decision) puts the police where the child is first (`emergency_route`),
    and adds the local police outside the UK; in the UK the police destination is always there.
    """
    destinations = _for_organisation(flag, criteria, directory, home_force_id, emergency)
    first = emergency_route(flag, directory, home_force_id) if emergency else None
    if first is None:
        return destinations
    return [first, *[destination for destination in destinations if destination != first]]


def _for_organisation(
    flag: ModerationFlag,
    criteria: tuple[Criterion, ...],
    directory: ForceDirectory,
    home_force_id: str,
    emergency: bool,
) -> list[Destination]:
    """The destinations that follow from the organisation's country."""
    country = flag.platform.country
    if country != UK:
        entry = MECHANISMS.get(country)
        mechanism = entry.mechanism if entry else LOCAL_POLICE
        abroad = (
            [mechanism] if mechanism == LOCAL_POLICE or not emergency else [LOCAL_POLICE, mechanism]
        )
        return [
            Destination(kind=DestinationKind.INTL, mechanism=m, country=country) for m in abroad
        ]
    force_id = police_force(flag, directory, home_force_id)
    destinations = [Destination(kind=DestinationKind.POLICE, force_id=force_id)]
    if Criterion.IIOC in criteria and may_be_shared_elsewhere(flag):
        destinations.append(Destination(kind=DestinationKind.IWF))
    return destinations
