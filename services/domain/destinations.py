"""Where a referral goes: the right UK police force, the IWF, or another country's mechanism.

- Organisation in the UK: one `police` destination, the force for the child's location (explicit
  force id, else postcode district or area), else the reported account's, else the organisation's
  home force; and `iwf` when the criteria include `iioc` and the images may be shared elsewhere.
- Organisation outside the UK: `intl`, the country's mechanism from `MECHANISMS` (sourced) for
  the criteria it takes, and the local police for the rest (or for all, without a mechanism). A
  P0 (a child at risk now) outside the UK also goes to the local police first: a hotline or
  clearing house is not an emergency service, the country's police is.
- A P0 whose child's country is known goes first to the police where the child is, wherever the
  organisation is: the UK force for the child's location when the child is in the UK, else that
  country's local police (`intl:<child's country>:local_police`); then to the organisation's
  destinations as above. Only the police where the child is can reach the child now.
- A regulated service (`nca` in its directory entry's `reports_to`) also reports CSEA content
  (grooming, coercion, images) to the NCA: all of it when the organisation is in the UK, the
  UK-linked content when it is not (`services.domain.nca`).
"""

from functools import lru_cache

from schemas.flag import Location, ModerationFlag, SignalCategory
from schemas.referral import Criterion, Destination, DestinationKind
from services.domain.forces import ForceDirectory
from services.domain.mechanisms import (
    LOCAL_POLICE,
    MECHANISMS,
    UK,
)
from services.domain.nca import CSEA_CRITERIA, in_scope_because
from services.domain.organisations import Organisation


@lru_cache(maxsize=1024)
def police(force_id: str) -> Destination:
    """A UK force's destination, made (and validated) once: destinations are few and frozen."""
    return Destination(kind=DestinationKind.POLICE, force_id=force_id)


@lru_cache(maxsize=1024)
def abroad(mechanism: str, country: str) -> Destination:
    """A country's mechanism (or its local police), made once."""
    return Destination(kind=DestinationKind.INTL, mechanism=mechanism, country=country)


IWF = Destination(kind=DestinationKind.IWF)
NCA = Destination(kind=DestinationKind.NCA)


def case_key(flag: ModerationFlag, destination: Destination) -> str:
    """Subject × destination: the organisation, the reported account and where it is sent."""
    return f"{flag.platform.org_id}|{flag.subject.account_id}|{destination.key}"


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
        return police(police_force(flag, directory, home_force_id))
    return abroad(LOCAL_POLICE, location.country)


def plan(
    flag: ModerationFlag,
    criteria: tuple[Criterion, ...],
    directory: ForceDirectory,
    home_force_id: str,
    *,
    emergency: bool = False,
    organisation: Organisation | None = None,
) -> list[Destination]:
    """The destinations for a flag referred or reviewed under `criteria`.

    `emergency` (a P0 decision) puts the police where the child is first (`emergency_route`),
    and adds the local police outside the UK; in the UK the police destination is always there.
    `organisation` (the flag's directory entry) adds the NCA, last, for CSEA content it must
    report there.
    """
    destinations = _for_organisation(flag, criteria, directory, home_force_id, emergency)
    if not CSEA_CRITERIA.isdisjoint(criteria) and in_scope_because(flag, organisation):
        destinations.append(NCA)
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
    """The destinations that follow from the organisation's country.

    Abroad, the country's mechanism gets the criteria it takes (`Mechanism.takes`: most hotlines
    take images alone), and the country's police get the rest: a grooming or sextortion report
    sent to an image hotline would reach no one who acts on it. An emergency goes to the police
    too, first. Both, when the criteria call for both.
    """
    country = flag.platform.country
    if country != UK:
        entry = MECHANISMS.get(country)
        if entry is None:
            return [abroad(LOCAL_POLICE, country)]
        wanted = set(criteria)
        to_police = emergency or not wanted <= entry.takes
        to_mechanism = not wanted or not wanted.isdisjoint(entry.takes)
        mechanisms = [LOCAL_POLICE] * to_police + [entry.mechanism] * to_mechanism
        return [abroad(m, country) for m in mechanisms]
    destinations = [police(police_force(flag, directory, home_force_id))]
    if Criterion.IIOC in criteria and may_be_shared_elsewhere(flag):
        destinations.append(IWF)
    return destinations
