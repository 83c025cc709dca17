"""Each country's mechanism for reporting CSAE online, and the local-police fallback."""

from dataclasses import dataclass

from schemas.referral import Criterion

UK = "GB"
LOCAL_POLICE = "local_police"

IMAGES = frozenset({Criterion.IIOC})
"""What an image hotline takes: reports of indecent images of children (URLs, hashes)."""
EXPLOITATION = frozenset({Criterion.IIOC, Criterion.GROOMING, Criterion.COERCION})
"""What a national mechanism for online sexual exploitation takes: images, grooming (luring,
online enticement) and sextortion. Not a child's safety otherwise (self-harm, other serious
harm): that is for the police."""


@dataclass(frozen=True, slots=True)
class Mechanism:
    """A country's mechanism for reporting child sexual abuse and exploitation online."""

    mechanism: str
    name: str
    website: str
    source: str
    """Where the entry comes from: the page that was read saying the mechanism takes reports of
    child sexual abuse material or exploitation online (its own page where one was found)."""
    takes: frozenset[Criterion] = IMAGES
    """The criteria it takes reports of: images alone unless a page of its own says more. A
    criterion it does not take goes to the country's police (`LOCAL_POLICE`) instead."""
    takes_source: str | None = None
    """The page saying it takes more than images, when it does."""


MECHANISMS_AS_OF = "2026-12-02"
"""When every entry's source was read, through the search tool's stored copies of the pages
(not the live web: a copy's own date is not known). Every entry here was checked that way; the
ones whose source is a news report or another body's page, not the mechanism's own, say so
beside them. Read an entry's source again before relying on it, and date the check.

Not in the table, so reported to the local police: countries whose mechanism could not be
sourced that way (South Korea's Korea Communications Standards Commission and Cyprus's hotline
among them: no page found saying what they take reports of) and countries without one."""

# By the organisation's country (ISO 3166-1 alpha-2). Outside the US, Canada, Australia, New
# Zealand and Taiwan these are national INHOPE member hotlines (inhope.org lists its members).
# A mechanism id is part of a case's key: never rename one, or open cases split in two.
# Most hotlines assess images and URLs alone (New Zealand's DIA, Offlimits' Meldpunt and Malta's
# Childwebalert say so on their own pages): grooming, sextortion and a child's safety go to the
# country's police instead. NCMEC's CyberTipline, Cybertip.ca and the ACCCE take grooming and
# sextortion too, and say so (`takes_source`); a child's safety otherwise is for the police.
MECHANISMS: dict[str, Mechanism] = {
    "US": Mechanism(
        "ncmec_cybertipline",
        "NCMEC CyberTipline",
        "https://report.cybertip.org",
        "https://www.missingkids.org/gethelpnow/cybertipline",
        EXPLOITATION,
        # Online enticement (grooming), sextortion among it, and child sexual abuse material.
        "http://www.missingkids.com/theissues/onlineexploitation",
    ),
    "CA": Mechanism(
        "cybertip_ca",
        "Cybertip.ca, Canadian Centre for Child Protection",
        "https://www.cybertip.ca",
        "https://www.cybertip.ca/app/en/about",
        EXPLOITATION,
        # Its report types: child sexual abuse material, luring, sextortion among the threats.
        "https://cyberaide.ca./en/report/types",
    ),
    "AU": Mechanism(
        "accce",
        "Australian Centre to Counter Child Exploitation",
        "https://www.accce.gov.au/report",
        "https://www.accce.gov.au/report",
        EXPLOITATION,
        # "Online child sexual exploitation / online grooming: this includes online grooming,
        # sextortion or other image based abuse."
        "https://www.accce.gov.au/report",
    ),
    "NZ": Mechanism(
        "nz_dia_dcet",
        "Department of Internal Affairs, Digital Child Exploitation Team",
        "https://www.dia.govt.nz/Digital-Safety-Report-Online-Child-Exploitation-Material",
        "https://www.dia.govt.nz/Digital-Safety-Report-Online-Child-Exploitation-Material",
    ),
    "BR": Mechanism(
        "safernet_brasil",
        "SaferNet Brasil",
        "https://new.safernet.org.br",
        # SaferNet's own report of the CSAM reports its national reporting channel shares with
        # the authorities (the federal prosecutors, MPF).
        "https://new.safernet.org.br/content/denuncias-de-imagens-de-abuso-e-exploracao-sexual-infantil-online-compartilhadas-pela",
    ),
    "JP": Mechanism(
        "internet_hotline_center_jp",
        "Internet Hotline Center Japan",
        "https://www.internethotline.jp",
        "https://www.internethotline.jp/pages/about/index",
    ),
    "CO": Mechanism(
        "te_protejo",
        "Te Protejo (Red PaPaz)",
        "https://teprotejocolombia.org",
        "https://teprotejocolombia.org/recursos",
    ),
    "ZA": Mechanism(
        "fpb_hotline",
        "Film and Publication Board Hotline",
        "https://www.fpbhotline.org.za",
        "https://www.fpbhotline.org.za/about-us.aspx",
    ),
    "TW": Mechanism(
        "iwin_tw",
        "iWIN (Institute of Watch Internet Network)",
        "https://i.win.org.tw/iWIN/",
        # Kinmen County Government's page: report online content breaching the child sexual
        # exploitation law to iWIN.
        "https://social.kinmen.gov.tw/Content_List.aspx?n=21540875FFCE4497",
    ),
    "IS": Mechanism(
        "barnaheill",
        "Barnaheill, Save the Children Iceland (tip line)",
        "https://www.barnaheill.is",
        # Iceland's 112 emergency line's page sends online child abuse to the Barnaheill tip line.
        "https://www.112.is/en/abuse/digital-sexual-abuse-kids",
    ),
    "IE": Mechanism(
        "hotline_ie",
        "Hotline.ie",
        "https://hotline.ie",
        "https://hotline.ie/about",
    ),
    "NL": Mechanism(
        "offlimits",
        "Offlimits Meldpunt Kinderporno (formerly EOKM)",
        "https://www.meldpunt-kinderporno.nl",
        "https://www.meldpunt-kinderporno.nl/wat-melden/",
    ),
    "BE": Mechanism(
        "child_focus",
        "Child Focus (stopchildporno.be)",
        "https://stopchildporno.be",
        "https://childfocus.be/en/report-child-pornography",
    ),
    "DE": Mechanism(
        "internet_beschwerdestelle",
        # eco and jugendschutz.net run the other two German hotlines (medienanstalt-rlp.de); all
        # three pass abuse material to the Bundeskriminalamt.
        "FSM-Beschwerdestelle",
        "https://www.fsm.de/fsm/beschwerdestelle/",
        "https://www.fsm.de/fsm/beschwerdestelle/",
    ),
    "FR": Mechanism(
        "point_de_contact",
        "Point de Contact",
        "https://www.pointdecontact.net",
        "https://www.pointdecontact.net",
    ),
    "AT": Mechanism(
        "stopline_at",
        "Stopline",
        "https://www.stopline.at",
        "https://stopline.at/index.php/de/ueber-stopline/wer-ist-stopline",
    ),
    "FI": Mechanism(
        "nettivihje",
        "Nettivihje, Save the Children Finland",
        "https://www.nettivihje.fi",
        "https://www.pelastakaalapset.fi/tyomme/mita-teemme/lasten-suojeleminen/nettivihje/nettivihjeen-toiminta/",
    ),
    "SE": Mechanism(
        "ecpat_se",
        "ECPAT Sweden hotline",
        "https://ecpat.se/hotline/hotline-eng/",
        "https://ecpat.se/hotline/hotline-eng/",
    ),
    "DK": Mechanism(
        "red_barnet_anmelddet",
        "AnmeldDet, Save the Children Denmark",
        "https://redbarnet.dk/reportit/report/",
        "https://redbarnet.dk/anmelddet/om-os/saadan-behandler-vi-din-anmeldelse/",
    ),
    "PL": Mechanism(
        "dyzurnet", "Dyżurnet.pl", "https://dyzurnet.pl", "https://dyzurnet.pl/faq.html"
    ),
    "CZ": Mechanism(
        "stoponline_cz",
        "STOPonline.cz (CZ.NIC)",
        "https://www.stoponline.cz",
        "https://stoponline.cz/en/what-report/",
    ),
    "SK": Mechanism(
        "ochranma_sk",
        "OCHRÁŇMA.sk",
        "https://ochranma.sk",
        "https://ochranma.sk/en/o-nas/",
    ),
    "HU": Mechanism(
        "internet_hotline_hu",
        "Internet Hotline (NMHH)",
        "https://nmhh.hu/internethotline/",
        "https://english.nmhh.hu/internethotline/about-us",
    ),
    "SI": Mechanism(
        "spletno_oko",
        "Spletno oko",
        "https://www.spletno-oko.si",
        "https://www.spletno-oko.si/english/who-are-we",
    ),
    "HR": Mechanism(
        "cnzd_hotline",
        "Centre for Missing and Abused Children hotline (CNZD)",
        "https://cnzd.org/hotline-hr",
        "https://cnzd.org/hotline-hr",
    ),
    "BG": Mechanism(
        "safenet_bg",
        "SafeNet.bg, Bulgarian Safer Internet Centre",
        "https://www.safenet.bg",
        # INHOPE's page welcoming the hotline's new operator (Association Roditeli); the earlier
        # operator stopped in 2022 for want of funding (ecpat.org).
        "https://www.inhope.org/EN/articles/welcoming-association-roditeli-bulgaria",
    ),
    "RO": Mechanism(
        "esc_abuz",
        "esc_ABUZ, Save the Children Romania",
        "https://oradenet.ro/esc-abuz-en",
        "https://www.oradenet.ro/en/esc-abuz/",
    ),
    "GR": Mechanism(
        "safeline",
        "SafeLine",
        "https://www.safeline.gr",
        "https://www.safeline.gr/en/about-us/",
    ),
    "IT": Mechanism(
        "telefono_azzurro",
        # Save the Children Italy's STOP-IT is Italy's other hotline; both pass reports to the
        # Polizia Postale's CNCPO.
        "Telefono Azzurro, Clicca e Segnala",
        "https://azzurro.it/clicca-e-segnala/",
        "https://azzurro.it/clicca-e-segnala/",
    ),
    "ES": Mechanism(
        "incibe",
        "INCIBE hotline",
        "https://www.incibe.es",
        # INHOPE's report of INCIBE's hotline agreement with Spain's prosecutors.
        "https://inhope.org/EN/articles/incibe-signs-agreement-with-spanish-prosecutor-s-office",
    ),
    "PT": Mechanism(
        "linha_internet_segura",
        "Linha Internet Segura (APAV)",
        "https://internetsegura.pt",
        # A news report (Diário de Notícias, 2026-02-10) of the hotline and what it takes.
        "https://www.dn.pt/sociedade/denncias-de-contedos-ilegais-na-linha-internet-segura-sobem-70",
    ),
    "LU": Mechanism(
        "bee_secure_stopline",
        "BEE SECURE Stopline",
        "https://stopline.bee-secure.lu",
        "https://stopline.bee-secure.lu",
    ),
    "LT": Mechanism(
        "svarus_internetas",
        "Švarus internetas (RRT)",
        "https://www.svarusinternetas.lt",
        "https://www.rrt.lt/saugesnis-internetas/interneto-karstoji-linija/",
    ),
    "LV": Mechanism(
        "drossinternets_lv",
        "Drossinternets.lv",
        "https://drossinternets.lv",
        # A news report (jauns.lv, 2025): report through Drossinternets.lv; the State Police act.
        "https://jauns.lv/raksts/zinas/651386-interneta-triskarsojies-seksualu-vardarbibu-pret-berniem-saturosu-materialu-skaits",
    ),
    "EE": Mechanism(
        "vihjeliin",
        "Vihjeliin, Estonian Union for Child Welfare",
        "https://vihjeliin.targaltinternetis.ee/en/",
        "https://vihjeliin.targaltinternetis.ee/en/",
    ),
    "MT": Mechanism(
        "childwebalert",
        "Childwebalert (Aġenzija Appoġġ)",
        "https://childwebalert.gov.mt",
        "https://childwebalert.gov.mt/en/Pages/who-we-are.aspx",
    ),
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
