"""Where a referral goes: the right UK police force, the IWF, or another country's mechanism."""

from schemas.flag import ModerationFlag, SignalCategory
from schemas.referral import Criterion, Destination, DestinationKind
from services.router.forces import ForceDirectory

UK = "GB"

# Reporting mechanisms outside the UK, by the organisation's country (ISO 3166-1 alpha-2).
# Sources: NCMEC (missingkids.org/cybertipline), Canadian Centre for Child Protection
# (cybertip.ca), Australian Federal Police ACCCE (accce.gov.au/report), Hotline.ie.
INTERNATIONAL_MECHANISMS: dict[str, str] = {
    "US": "ncmec_cybertipline",
    "CA": "cybertip_ca",
    "AU": "accce",
    "IE": "hotline_ie",
}
LOCAL_POLICE = "local_police"

MECHANISM_CONTACTS: dict[str, tuple[str, str | None]] = {
    "ncmec_cybertipline": ("NCMEC CyberTipline", "https://report.cybertip.org"),
    "cybertip_ca": ("Cybertip.ca, Canadian Centre for Child Protection", "https://www.cybertip.ca"),
    "accce": ("Australian Centre to Counter Child Exploitation", "https://www.accce.gov.au/report"),
    "hotline_ie": ("Hotline.ie", "https://hotline.ie"),
    LOCAL_POLICE: ("The local police of the organisation's country", None),
}


def police_force(flag: ModerationFlag, directory: ForceDirectory, home_force_id: str) -> str:
    """The force for the child's location, else the organisation's home force."""
    location = flag.child.location if flag.child else None
    if location is not None and location.country == UK:
        if location.force_id and location.force_id in directory.forces:
            return location.force_id
        if location.postcode_district:
            force = directory.for_postcode_district(location.postcode_district)
            if force is not None:
                return force.force_id
    return home_force_id


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


def plan(
    flag: ModerationFlag,
    criteria: tuple[Criterion, ...],
    directory: ForceDirectory,
    home_force_id: str,
) -> list[Destination]:
    """The destinations for a flag that is referred or reviewed under `criteria`."""
    country = flag.platform.country
    if country != UK:
        mechanism = INTERNATIONAL_MECHANISMS.get(country, LOCAL_POLICE)
        return [Destination(kind=DestinationKind.INTL, mechanism=mechanism, country=country)]
    force_id = police_force(flag, directory, home_force_id)
    destinations = [Destination(kind=DestinationKind.POLICE, force_id=force_id)]
    if Criterion.IIOC in criteria and may_be_shared_elsewhere(flag):
        destinations.append(Destination(kind=DestinationKind.IWF))
    return destinations
