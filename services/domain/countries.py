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
one compiled list, not the country's own word. Every `emergency` number below agrees with it;
some police numbers (Germany's 110, Belgium's 101, the Czech 158) are not in it."""

EU_112 = "http://europa.eu/rapid/press-release_MEMO-05-363_en.htm"
"""The European Commission (2005): 112 reaches the emergency services in every EU member state."""

EU_112_2008 = "https://www.govtech.com/public-safety/European-Emergency-Number-112-Now-Works.html"
"""The Commission (2008): 112 works in all EU member states, Bulgaria and Romania included."""


@dataclass(frozen=True, slots=True)
class PoliceNumber:
    """The police's own emergency number where it differs from the country's general one: both
    reach the police there, and a person there knows the police's own."""

    number: str
    source: str
    official: bool
    """As `Country.official`, for this number's source."""


@dataclass(frozen=True, slots=True)
class Country:
    """A country as a packet names it, and the number to call for its police in an emergency."""

    name: str
    """As a sentence writes it: "the United States", "France"."""
    emergency: str
    """The general emergency number there (112 across the EU), which reaches the police."""
    source: str
    official: bool
    """True when the source is the country's own police, emergency service or government (or a
    reporting mechanism there naming the number); False when only `AOSP_ECC` was read."""
    police: PoliceNumber | None = None
    """The police's own number, where it differs from `emergency` (110 in Germany)."""

    @property
    def dial(self) -> str:
        """The number a packet says to call first: the police's own, where there is one."""
        return self.police.number if self.police else self.emergency

    @property
    def also(self) -> str | None:
        """The general number, when `dial` is the police's own: it works too."""
        return self.emergency if self.police else None


def _police(number: str, source: str, *, official: bool) -> PoliceNumber:
    return PoliceNumber(number, source, official)


# The police's own numbers, each read on `COUNTRIES_AS_OF`.
_AT_133 = (
    "https://polizei.gv.at/Wien/start.aspx?ctrl=3734335266674D385951343D"
    "&nwid=6744344F4F5178367A2F493D&nwo=7"
)
"""Vienna police: "Unter der nationalen Notrufnummer 133 kommen Sie zur Polizei"."""
_BE_101 = "https://www.police.be/5998/fr/contact/numeros-durgence"
"""Belgian police: 112 for the police is put through to 101, so call 101 directly."""
_BG_166 = (
    "https://m.inews.bg/%D0%91%D1%8A%D0%BB%D0%B3%D0%B0%D1%80%D0%B8%D1%8F/"
    "%D0%9C%D0%92%D0%A0-%D0%BF%D1%80%D0%B8%D0%B7%D0%BE%D0%B2%D0%B0%D0%B2%D0%B0-"
    "%D0%B3%D1%80%D0%B0%D0%B6%D0%B4%D0%B0%D0%BD%D0%B8%D1%82%D0%B5-%D0%B7%D0%B0-"
    "%D0%B1%D0%B4%D0%B8%D1%82%D0%B5%D0%BB%D0%BD%D0%BE%D1%81%D1%82_l.a_c.327_i.5226.html"
)
"""A news report of the interior ministry's appeal: report on 112 or 166 (no page of the
ministry's own was found)."""
_CZ_158 = "https://www.policie.cz/docDetail.aspx?docid=21563991&docType=ART&prn=1"
"""Police of the Czech Republic: the national emergency line 158."""
_DE_110 = "https://www.polizei.bremerhaven.de/notruf-110-232.html"
"""Bremerhaven police: 110 is the police, 112 the fire brigade (both reach help)."""
_FR_17 = (
    "https://mobile.interieur.gouv.fr/Archives/Archives-des-dossiers/2014-Dossiers/"
    "24-heures-avec-police-secours-a-Amiens"
)
"""The interior ministry: 17 police-secours alerts the police or gendarmerie at once."""
_GR_100 = (
    "https://www.flash.gr/elliniki-astynomia-kliseis-sto-112-gia-epeigonta-peristatika-"
    "logo-vlavis-sto-100-1045740"
)
"""A news report of the Hellenic Police's notice on its emergency line 100 (112 works too)."""
_HR_192 = "https://www.hakom.hr/hr/hitne-sluzbe/184"
"""HAKOM, Croatia's telecoms regulator: 112 is the single emergency number; 192 the police."""
_LU_113 = "https://police.public.lu/de/votre-police/appel-urgence-113.html"
"""Grand-Ducal Police: in an emergency call 113 at once."""
_LV_110 = "https://mana.latvija.lv/palidzibas-dienesti-un-to-pakalpojumi/"
"""Latvia's state portal: 112 for every service; the State Police's own number is 110."""
_SI_113 = "https://www.policija.si/kontakti/nujni-klici-113"
"""Slovenian police: when you need the police, call 113."""
_SK_158 = "https://www.teraz.sk/slovensko/vlani-prijali-operacne-strediska-poli/931224-clanok.html"
"""TASR's report of the Police Presidium's figures for its emergency line 158."""


def _eu(name: str, police: PoliceNumber | None = None) -> Country:
    return Country(name, "112", EU_112, official=True, police=police)


COUNTRIES: dict[str, Country] = {
    # ISO 3166-1 alpha-2. 112 also reaches the UK's emergency services; 999 is the number a UK
    # call handler knows and says.
    "GB": Country(
        "the United Kingdom", "999", "http://www.dorset.police.uk/Default.aspx?page=728", True
    ),
    "US": Country("the United States", "911", "https://www.fcc.gov/consumer-information", True),
    # The CRTC, Canada's telecoms regulator: 9-1-1 connects Canadians to emergency services.
    "CA": Country("Canada", "911", "https://crtc.gc.ca/eng/archive/2024/lt240125.htm", True),
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
    # The rest of the EU: 112 by EU law (the Commission's word, 2005 and 2008). Where the police
    # have their own number, a packet gives it first ("110 (police; 112 also works)"), from the
    # police's or government's own page where one was found (`official`), else from a news report
    # quoting the police or the compiled list. Poland's 997 and Hungary's 107 are answered by the
    # 112 centres now, and the police there say to call 112 (policja.pl, police.hu): 112 alone.
    "AT": _eu("Austria", _police("133", _AT_133, official=True)),
    "BE": _eu("Belgium", _police("101", _BE_101, official=True)),
    "BG": Country("Bulgaria", "112", EU_112_2008, True, _police("166", _BG_166, official=False)),
    "HR": Country("Croatia", "112", _HR_192, True, _police("192", _HR_192, official=True)),
    "CY": _eu("Cyprus"),
    "CZ": _eu("the Czech Republic", _police("158", _CZ_158, official=True)),
    "DK": _eu("Denmark"),
    "EE": _eu("Estonia"),
    "FI": _eu("Finland"),
    "FR": _eu("France", _police("17", _FR_17, official=True)),
    "DE": _eu("Germany", _police("110", _DE_110, official=True)),
    "GR": _eu("Greece", _police("100", _GR_100, official=False)),
    "HU": _eu("Hungary"),
    "IE": _eu("Ireland"),
    "IT": _eu("Italy", _police("113", AOSP_ECC, official=False)),
    "LV": _eu("Latvia", _police("110", _LV_110, official=True)),
    "LT": _eu("Lithuania"),
    "LU": _eu("Luxembourg", _police("113", _LU_113, official=True)),
    "MT": _eu("Malta"),
    "PL": _eu("Poland"),
    "PT": _eu("Portugal"),
    "RO": Country("Romania", "112", EU_112_2008, True),
    "SK": _eu("Slovakia", _police("158", _SK_158, official=False)),
    "SI": _eu("Slovenia", _police("113", _SI_113, official=True)),
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


UK_EMERGENCY = COUNTRIES["GB"].emergency
"""999: what a UK packet says to call, and what one stored before `emergency_number` said."""
