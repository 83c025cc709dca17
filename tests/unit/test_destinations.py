"""The UK force directory and destination planning: the right force, the IWF, or abroad."""

import re
from datetime import date
from typing import Any

import pytest

from schemas.flag import ModerationFlag
from schemas.referral import Criterion, Destination, DestinationKind
from services.domain.destinations import (
    plan,
    police_force,
    unknown_force_ids,
)
from services.domain.forces import uk_forces
from services.domain.mechanisms import (
    INTERNATIONAL_MECHANISMS,
    LOCAL_POLICE,
    MECHANISM_CONTACTS,
    MECHANISMS,
    MECHANISMS_AS_OF,
)
from tests.factories import image, make_flag, signal

HOME = "thames-valley"


def _child_in(**location: str) -> ModerationFlag:
    return make_flag(child={"age_band": "13_15", "location": {"country": "GB", **location}})


def test_directory_lists_the_46_uk_forces() -> None:
    forces = uk_forces().forces
    assert len(forces) == 46
    england_and_wales = [f for f in forces.values() if f.nation in ("england", "wales")]
    assert len(england_and_wales) == 43
    assert {"police-scotland", "northern-ireland", "btp"} <= forces.keys()
    assert all(force_id == force.force_id for force_id, force in forces.items())


def test_every_force_has_101_an_https_website_and_a_source() -> None:
    for force in uk_forces().forces.values():
        assert force.phone == "101", force.force_id
        assert force.website.startswith("https://"), force.force_id
        assert force.name, force.force_id
        assert force.source.startswith("https://"), force.force_id


def test_forces_on_data_police_uk_are_sourced_there_under_their_own_id() -> None:
    for force in uk_forces().forces.values():
        if force.force_id != "police-scotland":  # not on data.police.uk: sourced from its site
            assert force.source == f"https://data.police.uk/api/forces/{force.force_id}"


def test_the_directory_is_dated() -> None:
    assert date.fromisoformat(uk_forces().as_of) <= date(2026, 11, 26)


# Every postcode area of the UK (Royal Mail), without the Crown dependencies (GY, JE, IM: their
# own police) and the non-geographic BF and BX.
UK_POSTCODE_AREAS = (  # noqa: SIM905 (121 short codes read better as text)
    "AB AL B BA BB BD BH BL BN BR BS BT CA CB CF CH CM CO CR CT CV CW DA DD DE DG DH DL DN DT DY "
    "E EC EH EN EX FK FY G GL GU HA HD HG HP HR HS HU HX IG IP IV KA KT KW KY L LA LD LE LL LN LS "
    "LU M ME MK ML N NE NG NN NP NR NW OL OX PA PE PH PL PO PR RG RH RM S SA SE SG SK SL SM SN SO "
    "SP SR SS ST SW SY TA TD TF TN TQ TR TS TW UB W WA WC WD WF WN WR WS WV YO ZE"
).split()


def test_every_uk_postcode_area_is_mapped() -> None:
    assert len(UK_POSTCODE_AREAS) == 121
    assert sorted(uk_forces().postcode_areas) == sorted(UK_POSTCODE_AREAS)


def test_every_postcode_area_maps_to_a_known_force() -> None:
    directory = uk_forces()
    assert directory.postcode_areas
    for area, force_id in directory.postcode_areas.items():
        assert re.fullmatch("[A-Z]{1,2}", area), area
        assert force_id in directory.forces, area


def test_every_territorial_force_is_reachable_by_postcode() -> None:
    directory = uk_forces()
    reachable = set(directory.postcode_areas.values())
    assert sorted(set(directory.forces) - reachable - {"btp"}) == []


@pytest.mark.parametrize(
    ("district", "force_id"),
    [
        ("NG1", "nottinghamshire"),
        ("BN1", "sussex"),
        ("SO14", "hampshire"),
        # Districts that lie in another force than most of their area.
        ("CV1", "west-midlands"),
        ("CV34", "warwickshire"),
        ("DN1", "south-yorkshire"),
        ("DN15", "humberside"),
        ("LA9", "cumbria"),
        ("LA1", "lancashire"),
        ("SA31", "dyfed-powys"),
        ("SA1", "south-wales"),
        # Burton upon Trent is Staffordshire's, in Derbyshire's DE area; Haslemere is Surrey's.
        ("DE13", "staffordshire"),
        ("DE14", "staffordshire"),
        ("DE15", "staffordshire"),
        ("DE1", "derbyshire"),
        ("DE11", "derbyshire"),
        ("GU27", "surrey"),
        ("GU28", "sussex"),
    ],
)
def test_child_postcode_in_a_county_force_area_goes_to_that_force(
    district: str, force_id: str
) -> None:
    assert police_force(_child_in(postcode_district=district), uk_forces(), HOME) == force_id


@pytest.mark.parametrize(
    ("location", "force_id"),
    [
        ({"force_id": "kent", "postcode_district": "M1"}, "kent"),
        ({"force_id": "not-a-force", "postcode_district": "M1"}, "greater-manchester"),
        ({"postcode_district": "M1"}, "greater-manchester"),
        ({"postcode_district": "EH1"}, "police-scotland"),
        ({"postcode_district": "BT1"}, "northern-ireland"),
        ({"postcode_district": "SW1A"}, "metropolitan"),
        ({"postcode_district": "B1"}, "west-midlands"),
        ({"postcode_district": "BD1"}, "west-yorkshire"),
        ({"postcode_district": "EC1A"}, "city-of-london"),
        ({"postcode_district": "ME14"}, "kent"),
        ({"postcode_district": "QQ1"}, HOME),
        ({}, HOME),
        ({"force_id": "not-a-force"}, HOME),
    ],
)
def test_police_force_follows_the_child_location(location: dict[str, str], force_id: str) -> None:
    assert police_force(_child_in(**location), uk_forces(), HOME) == force_id


@pytest.mark.parametrize(
    "child",
    [
        None,
        {"age_band": "under_13"},
        {"location": {"country": "FR", "force_id": "kent", "postcode_district": "M1"}},
    ],
    ids=["no-child", "no-location", "child-abroad"],
)
def test_police_force_falls_back_to_the_home_force(child: dict[str, Any] | None) -> None:
    assert police_force(make_flag(child=child), uk_forces(), HOME) == HOME


def _iioc_flag(content: list[dict[str, Any]] | None = None, **extra: Any) -> ModerationFlag:
    return make_flag(signals=[signal("iioc", 1.0, **extra)], content=content or [image()])


def _kinds(destinations: list[Destination]) -> list[DestinationKind]:
    return [destination.kind for destination in destinations]


def _hash(*, external: bool, match: str = "exact") -> dict[str, Any]:
    return {"list": "synthetic-test-list", "match": match, "external": external}


@pytest.mark.parametrize(
    ("flag", "criteria", "iwf"),
    [
        (_iioc_flag(hash_match=_hash(external=True)), (Criterion.IIOC,), True),
        (_iioc_flag(hash_match=_hash(external=True, match="perceptual")), (Criterion.IIOC,), True),
        (_iioc_flag(shared_externally=True), (Criterion.IIOC,), True),
        (_iioc_flag([image(public=True)]), (Criterion.IIOC,), True),
        (
            _iioc_flag(hash_match=_hash(external=False), shared_externally=True),
            (Criterion.IIOC,),
            True,
        ),
        (_iioc_flag(hash_match=_hash(external=False)), (Criterion.IIOC,), False),
        (
            _iioc_flag(hash_match=_hash(external=False), shared_externally=False),
            (Criterion.IIOC,),
            False,
        ),
        (_iioc_flag(), (Criterion.IIOC,), False),
        (
            _iioc_flag([{**image(), "url": "https://cdn.example.org/private", "public": False}]),
            (Criterion.IIOC,),
            False,
        ),
        (
            _iioc_flag([{**image(), "url": "https://cdn.example.org/unknown"}]),
            (Criterion.IIOC,),
            False,
        ),
        (_iioc_flag(shared_externally=True), (Criterion.GROOMING,), False),
        (_iioc_flag(hash_match=_hash(external=True)), (Criterion.SAFETY,), False),
    ],
    ids=[
        "external-exact-list",
        "external-perceptual-list",
        "shared-externally",
        "public-url",
        "platform-list-but-shared",
        "platform-only-list",
        "platform-only-list-not-shared",
        "no-sharing-evidence",
        "private-url",
        "url-public-unknown",
        "shared-but-no-iioc-criterion",
        "external-list-but-no-iioc-criterion",
    ],
)
def test_iwf_only_for_iioc_that_may_be_shared_elsewhere(
    flag: ModerationFlag, criteria: tuple[Criterion, ...], iwf: bool
) -> None:
    destinations = plan(flag, criteria, uk_forces(), HOME)
    expected = [DestinationKind.POLICE, DestinationKind.IWF] if iwf else [DestinationKind.POLICE]
    assert _kinds(destinations) == expected
    assert destinations[0].force_id == HOME


def _abroad(country: str, child_location: dict[str, str] | None = None) -> ModerationFlag:
    return make_flag(
        platform={"org_id": "org-test", "service": "chat", "country": country},
        signals=[signal("iioc", 1.0, hash_match=_hash(external=True), shared_externally=True)],
        content=[image(public=True)],
        child={"location": child_location or {"country": "GB", "postcode_district": "M1"}},
    )


@pytest.mark.parametrize(
    ("country", "mechanisms"),
    [
        # Mechanisms that take grooming as well as images: one destination.
        ("US", ["ncmec_cybertipline"]),
        ("CA", ["cybertip_ca"]),
        ("AU", ["accce"]),
        # Image hotlines: the images to them, the grooming to the country's police.
        ("NZ", ["local_police", "nz_dia_dcet"]),
        ("IE", ["local_police", "hotline_ie"]),
        ("FR", ["local_police", "point_de_contact"]),
        ("DE", ["local_police", "internet_beschwerdestelle"]),
        ("NL", ["local_police", "offlimits"]),
        ("JP", ["local_police", "internet_hotline_center_jp"]),
        ("BR", ["local_police", "safernet_brasil"]),
        ("KR", ["local_police"]),
    ],
)
def test_organisation_outside_the_uk_sends_each_criterion_to_whoever_takes_it(
    country: str, mechanisms: list[str]
) -> None:
    destinations = plan(_abroad(country), (Criterion.IIOC, Criterion.GROOMING), uk_forces(), HOME)
    assert destinations == [
        Destination(kind=DestinationKind.INTL, mechanism=mechanism, country=country)
        for mechanism in mechanisms
    ]


@pytest.mark.parametrize(
    ("country", "criteria", "mechanisms"),
    [
        # Images alone: the hotline alone.
        ("NZ", (Criterion.IIOC,), ["nz_dia_dcet"]),
        ("MT", (Criterion.IIOC,), ["childwebalert"]),
        # Grooming or sextortion, and no images: the police, never an image hotline.
        ("NZ", (Criterion.GROOMING,), ["local_police"]),
        ("NL", (Criterion.COERCION,), ["local_police"]),
        ("MT", (Criterion.COERCION, Criterion.GROOMING), ["local_police"]),
        ("US", (Criterion.COERCION,), ["ncmec_cybertipline"]),
        # A child's safety (self-harm, other serious harm): the police, even beside NCMEC.
        ("US", (Criterion.SAFETY,), ["local_police"]),
        ("US", (Criterion.COERCION, Criterion.SAFETY), ["local_police", "ncmec_cybertipline"]),
    ],
)
def test_a_mechanism_gets_only_what_it_takes_and_the_police_get_the_rest(
    country: str, criteria: tuple[Criterion, ...], mechanisms: list[str]
) -> None:
    destinations = plan(_abroad(country), criteria, uk_forces(), HOME)
    assert [d.mechanism for d in destinations] == mechanisms


@pytest.mark.parametrize("country", sorted(MECHANISMS))
@pytest.mark.parametrize("criterion", list(Criterion))
@pytest.mark.parametrize("emergency", [False, True])
def test_every_criterion_reaches_someone_who_acts_on_it(
    country: str, criterion: Criterion, emergency: bool
) -> None:
    """Whatever the country and the criterion, a destination takes it (the local police take
    every criterion, a mechanism what its entry says), and nothing goes where it is not taken."""
    flag = make_flag(platform={"org_id": "org-test", "service": "chat", "country": country})
    destinations = plan(flag, (criterion,), uk_forces(), HOME, emergency=emergency)
    takes = {entry.mechanism: entry.takes for entry in MECHANISMS.values()}
    for destination in destinations:
        assert (
            destination.mechanism == LOCAL_POLICE or criterion in takes[destination.mechanism or ""]
        )
    assert destinations, (country, criterion)
    if emergency:
        assert destinations[0].mechanism == LOCAL_POLICE


def test_only_mechanisms_that_say_so_take_more_than_images() -> None:
    wider = {entry.mechanism for entry in MECHANISMS.values() if entry.takes != {Criterion.IIOC}}
    assert wider == {"ncmec_cybertipline", "cybertip_ca", "accce"}
    for entry in MECHANISMS.values():
        assert Criterion.SAFETY not in entry.takes, entry.mechanism
        assert Criterion.IIOC in entry.takes, entry.mechanism
        if entry.takes != {Criterion.IIOC}:
            assert entry.takes_source is not None
            assert entry.takes_source.startswith("https://") or entry.takes_source.startswith(
                "http://"
            )


@pytest.mark.parametrize(
    ("country", "criteria", "mechanisms"),
    [
        ("US", (Criterion.SAFETY,), ["local_police"]),
        ("US", (Criterion.COERCION, Criterion.SAFETY), ["local_police", "ncmec_cybertipline"]),
        ("JP", (Criterion.SAFETY,), ["local_police"]),
        ("JP", (Criterion.IIOC, Criterion.SAFETY), ["local_police", "internet_hotline_center_jp"]),
        ("KR", (Criterion.SAFETY,), ["local_police"]),
    ],
)
def test_an_emergency_outside_the_uk_goes_to_the_local_police_first(
    country: str, criteria: tuple[Criterion, ...], mechanisms: list[str]
) -> None:
    flag = _abroad(country, {"country": country})
    destinations = plan(flag, criteria, uk_forces(), HOME, emergency=True)
    assert [(d.kind, d.mechanism, d.country) for d in destinations] == [
        (DestinationKind.INTL, mechanism, country) for mechanism in mechanisms
    ]


def test_an_emergency_in_the_uk_still_has_exactly_one_police_force() -> None:
    flag = _child_in(postcode_district="M1")
    destinations = plan(flag, (Criterion.SAFETY,), uk_forces(), HOME, emergency=True)
    assert destinations == [Destination(kind=DestinationKind.POLICE, force_id="greater-manchester")]


def test_every_mechanism_is_sourced_and_has_a_contact_for_packets() -> None:
    assert date.fromisoformat(MECHANISMS_AS_OF).isoformat() == MECHANISMS_AS_OF
    ids = [entry.mechanism for entry in MECHANISMS.values()]
    assert len(ids) == len(set(ids))
    for country, entry in MECHANISMS.items():
        assert re.fullmatch("[A-Z]{2}", country), country
        assert country != "GB"
        assert entry.website.startswith("https://"), country
        assert entry.source.startswith("https://"), country
        assert MECHANISM_CONTACTS[entry.mechanism] == (entry.name, entry.website)
        assert INTERNATIONAL_MECHANISMS[country] == entry.mechanism
    assert MECHANISM_CONTACTS[LOCAL_POLICE][1] is None


@pytest.mark.parametrize(
    ("child", "subject_location", "force_id"),
    [
        (None, {"country": "GB", "postcode_district": "LS1"}, "west-yorkshire"),
        (None, {"country": "GB", "force_id": "kent"}, "kent"),
        ({"age_band": "13_15"}, {"country": "GB", "postcode_district": "LS1"}, "west-yorkshire"),
        (
            {"location": {"country": "GB", "postcode_district": "M1"}},
            {"country": "GB", "postcode_district": "LS1"},
            "greater-manchester",
        ),
        (
            {"location": {"country": "FR"}},
            {"country": "GB", "postcode_district": "CF10"},
            "south-wales",
        ),
        (None, {"country": "FR"}, HOME),
        (None, {"country": "GB", "postcode_district": "QQ1"}, HOME),
    ],
    ids=[
        "subject-postcode",
        "subject-force",
        "child-without-location",
        "child-wins",
        "child-abroad-subject-in-uk",
        "subject-abroad",
        "subject-unknown-postcode",
    ],
)
def test_police_force_falls_back_to_the_subjects_location(
    child: dict[str, Any] | None, subject_location: dict[str, str], force_id: str
) -> None:
    subject = {"account_id": "acct-test-subject", "location": subject_location}
    flag = make_flag(child=child, subject=subject)
    assert police_force(flag, uk_forces(), HOME) == force_id


POLICE_M1 = Destination(kind=DestinationKind.POLICE, force_id="greater-manchester")
IWF = Destination(kind=DestinationKind.IWF)


def _intl(country: str, mechanism: str = LOCAL_POLICE) -> Destination:
    return Destination(kind=DestinationKind.INTL, mechanism=mechanism, country=country)


@pytest.mark.parametrize(
    ("org", "child_location", "expected"),
    [
        # A UK organisation whose child is in France: French police first, then as in the UK.
        (
            "GB",
            {"country": "FR"},
            [_intl("FR"), Destination(kind=DestinationKind.POLICE, force_id=HOME), IWF],
        ),
        # A US organisation whose child is in Manchester: Greater Manchester Police first.
        (
            "US",
            {"country": "GB", "postcode_district": "M1"},
            [POLICE_M1, _intl("US"), _intl("US", "ncmec_cybertipline")],
        ),
        # A child in the UK with no postcode: a UK force still (the home force), not none.
        (
            "US",
            {"country": "GB"},
            [
                Destination(kind=DestinationKind.POLICE, force_id=HOME),
                _intl("US"),
                _intl("US", "ncmec_cybertipline"),
            ],
        ),
        ("KR", {"country": "FR"}, [_intl("FR"), _intl("KR")]),
        # Child and organisation in one country: nothing twice.
        ("US", {"country": "US"}, [_intl("US"), _intl("US", "ncmec_cybertipline")]),
        ("GB", {"country": "GB", "postcode_district": "M1"}, [POLICE_M1, IWF]),
    ],
    ids=[
        "uk-org-child-in-france",
        "us-org-child-in-manchester",
        "us-org-child-in-uk-unplaced",
        "kr-org-child-in-france",
        "same-country-abroad",
        "same-country-uk",
    ],
)
def test_an_emergency_goes_first_to_the_police_where_the_child_is(
    org: str, child_location: dict[str, str], expected: list[Destination]
) -> None:
    flag = _abroad(org, child_location)
    assert plan(flag, (Criterion.IIOC, Criterion.SAFETY), uk_forces(), HOME, emergency=True) == (
        expected
    )


def test_without_an_emergency_the_childs_country_does_not_add_a_destination() -> None:
    flag = _abroad("GB", {"country": "FR"})
    assert plan(flag, (Criterion.SAFETY,), uk_forces(), HOME) == [
        Destination(kind=DestinationKind.POLICE, force_id=HOME)
    ]


@pytest.mark.parametrize(
    ("child", "subject_location", "unknown"),
    [
        ({"location": {"country": "GB", "force_id": "not-a-force"}}, None, ["not-a-force"]),
        (None, {"country": "GB", "force_id": "kent-old"}, ["kent-old"]),
        ({"location": {"country": "GB", "force_id": "kent"}}, None, []),
        ({"location": {"country": "FR", "force_id": "not-a-force"}}, None, []),  # not looked up
        (None, None, []),
    ],
    ids=["child", "subject", "known", "abroad", "none"],
)
def test_an_unknown_explicit_force_id_is_reported(
    child: dict[str, Any] | None, subject_location: dict[str, str] | None, unknown: list[str]
) -> None:
    subject: dict[str, Any] = {"account_id": "acct-test-subject"}
    if subject_location:
        subject["location"] = subject_location
    assert unknown_force_ids(make_flag(child=child, subject=subject), uk_forces()) == unknown
