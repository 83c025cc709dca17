"""Each country's mechanism for reporting CSAE online, and the local-police fallback."""

from dataclasses import dataclass

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
