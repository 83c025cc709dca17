"""The countries a packet may name: each one's name and its emergency number for the police.

A packet abroad must tell the person sending it which number reaches the police there now (a
UK packet's "call 999" is wrong in the United States), and name the country, not only its code.
"""

from dataclasses import dataclass

COUNTRIES_AS_OF = "2026-12-02"
"""When every entry's source was read, through the search tool's stored copies of the pages
(not the live web: a copy's own date is not known). Read an entry's source again before relying
on it, and date the check."""

AOSP_ECC = (
    "https://github.com/GrapheneOS/platform_packages_services_Telephony/blob/"
    "6927a4263493d1eeff05d64c3127a2617032a708/ecc/input/eccdata.txt"
)
"""Android's table of emergency numbers by country (AOSP `eccdata.txt`, as GrapheneOS carries it):
one compiled list, not the country's own word. Every entry below agrees with it."""

EU_112 = "http://europa.eu/rapid/press-release_MEMO-05-363_en.htm"
"""The European Commission (2005): 112 reaches the emergency services in every EU member state."""

EU_112_2008 = "https://www.govtech.com/public-safety/European-Emergency-Number-112-Now-Works.html"
"""The Commission (2008): 112 works in all EU member states, Bulgaria and Romania included."""


@dataclass(frozen=True, slots=True)
class Country:
    """A country as a packet names it, and the number to call for its police in an emergency."""

    name: str
    """As a sentence writes it: "the United States", "France"."""
    emergency: str
    """The number that reaches the police there when a child is in danger now."""
    source: str
    official: bool
    """True when the source is the country's own police, emergency service or government (or a
    reporting mechanism there naming the number); False when only `AOSP_ECC` was read."""


def _eu(name: str) -> Country:
    return Country(name, "112", EU_112, official=True)


COUNTRIES: dict[str, Country] = {
    # ISO 3166-1 alpha-2. 112 also reaches the UK's emergency services; 999 is the number a UK
    # call handler knows and says.
    "GB": Country(
        "the United Kingdom", "999", "http://www.dorset.police.uk/Default.aspx?page=728", True
    ),
    "US": Country("the United States", "911", "https://www.fcc.gov/consumer-information", True),
    "CA": Country("Canada", "911", "https://www.fcc.gov/consumer-information", True),
    "AU": Country("Australia", "000", "https://www.accce.gov.au/report", True),
    "NZ": Country(
        "New Zealand", "111", "https://www.police.govt.nz/contact-us/calling-emergency-111", True
    ),
    "JP": Country("Japan", "110", "https://www.internethotline.jp/", True),
    "BR": Country(
        "Brazil",
        "190",
        "https://app.campoflorido.mg.gov.br/carta-de-servicos/c/2/i/14661/acionar-emergencia-policial-190",
        True,
    ),
    "CO": Country(
        "Colombia",
        "123",
        "https://www.policia.gov.co/noticia/policia-nacional-sensibiliza-comunidad-sobre-uso-las-lineas-emergencia-123-155",
        True,
    ),
    "ZA": Country("South Africa", "10111", "https://www.saps.gov.za/services/cc_10111.php", True),
    "TW": Country(
        "Taiwan", "110", "https://social.kinmen.gov.tw/Content_List.aspx?n=21540875FFCE4497", True
    ),
    "IS": Country("Iceland", "112", "https://www.112.is/en/abuse/digital-sexual-abuse-kids", True),
    "NL": Country(
        "the Netherlands", "112", "https://www.meldpunt-kinderporno.nl/wat-melden/", True
    ),
    # The rest of the EU: 112 by EU law (the Commission's word, 2005 and 2008). Croatia joined in
    # 2013, after those: only the compiled list was read for it.
    "AT": _eu("Austria"),
    "BE": _eu("Belgium"),
    "BG": Country("Bulgaria", "112", EU_112_2008, True),
    "HR": Country("Croatia", "112", AOSP_ECC, False),
    "CY": _eu("Cyprus"),
    "CZ": _eu("the Czech Republic"),
    "DK": _eu("Denmark"),
    "EE": _eu("Estonia"),
    "FI": _eu("Finland"),
    "FR": _eu("France"),
    "DE": _eu("Germany"),
    "GR": _eu("Greece"),
    "HU": _eu("Hungary"),
    "IE": _eu("Ireland"),
    "IT": _eu("Italy"),
    "LV": _eu("Latvia"),
    "LT": _eu("Lithuania"),
    "LU": _eu("Luxembourg"),
    "MT": _eu("Malta"),
    "PL": _eu("Poland"),
    "PT": _eu("Portugal"),
    "RO": Country("Romania", "112", EU_112_2008, True),
    "SK": _eu("Slovakia"),
    "SI": _eu("Slovenia"),
    "ES": _eu("Spain"),
    "SE": _eu("Sweden"),
    # Only the compiled list was read for these (the police's number where it lists one apart).
    "NO": Country("Norway", "112", AOSP_ECC, False),
    "CH": Country("Switzerland", "112", AOSP_ECC, False),
    "KR": Country("South Korea", "112", AOSP_ECC, False),
    "IN": Country("India", "112", AOSP_ECC, False),
    "MX": Country("Mexico", "911", AOSP_ECC, False),
    "AR": Country("Argentina", "911", AOSP_ECC, False),
    "CL": Country("Chile", "133", AOSP_ECC, False),
    "PH": Country("the Philippines", "911", AOSP_ECC, False),
    "ID": Country("Indonesia", "110", AOSP_ECC, False),
    "TH": Country("Thailand", "191", AOSP_ECC, False),
    "SG": Country("Singapore", "999", AOSP_ECC, False),
    "MY": Country("Malaysia", "999", AOSP_ECC, False),
    "HK": Country("Hong Kong", "999", AOSP_ECC, False),
    "IL": Country("Israel", "100", AOSP_ECC, False),
    "AE": Country("the United Arab Emirates", "999", AOSP_ECC, False),
    "KE": Country("Kenya", "999", AOSP_ECC, False),
    "UA": Country("Ukraine", "102", AOSP_ECC, False),
}
"""By ISO 3166-1 alpha-2 code. A country missing here is named by its code, and a packet tells
the sender to call that country's emergency number without giving it."""


def country_name(code: str) -> str:
    """The country's name for a sentence ("the United States"), else "the country with code XK"."""
    country = COUNTRIES.get(code)
    return country.name if country else f"the country with code {code}"
