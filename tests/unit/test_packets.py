"""Case packets: what a person sends to the police or the IWF, built from metadata only."""

import re
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from ipaddress import ip_address
from typing import Any
from uuid import UUID

import pytest
from pydantic import BaseModel

from schemas.flag import ModerationFlag
from schemas.packets import NO_IMAGES_STATEMENT, IwfPacket, Packet, PolicePacket, Supplement
from schemas.referral import Destination, DestinationKind, Priority, ReferralTask
from services.domain.countries import COUNTRIES, COUNTRIES_AS_OF
from services.domain.forces import uk_forces
from services.domain.mechanisms import MECHANISMS
from services.domain.policy import default_policy
from services.referral.packet_text import render_text
from services.referral.packets import Reporter, authority, build_packet
from services.router.routing import route
from tests.factories import DETECTED_AT, image, make_flag, signal

HOME = "thames-valley"
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
CASE_ID = UUID("00000000-0000-4000-8000-000000000001")
REPORTER = Reporter(
    name="Example Platform Ltd",
    safeguarding_contact="Safeguarding team, +44 20 0000 0000",
    safeguarding_email="safeguarding@example.org",
)
EXTERNAL_EXACT = {"list": "synthetic-test-list", "match": "exact", "external": True}
SUBJECT = {"account_id": "acct-test-packet", "username": "test_user", "ips": ["192.0.2.1"]}


def _flag(*signals: dict[str, Any], minutes: int = 0, **overrides: Any) -> ModerationFlag:
    detected = (DETECTED_AT + timedelta(minutes=minutes)).isoformat()
    document: dict[str, Any] = {
        "signals": list(signals),
        "detected_at": detected,
        "published_at": detected,
        "subject": SUBJECT,
        **overrides,
    }
    return make_flag(**document)


def _tasks(flag: ModerationFlag, kind: DestinationKind) -> list[ReferralTask]:
    routing = route(
        flag, policy=default_policy(), directory=uk_forces(), home_force_id=HOME, now=NOW
    )
    return [task for task in routing.tasks if task.destination.kind is kind]


def _packet(tasks: Sequence[ReferralTask], supplement: Supplement | None = None) -> Packet:
    return build_packet(
        case_id=CASE_ID,
        version=2 if supplement else 1,
        destination=tasks[0].destination,
        tasks=tasks,
        reporter=REPORTER,
        directory=uk_forces(),
        now=NOW,
        supplement=supplement,
    )


def _police(*flags: ModerationFlag) -> PolicePacket:
    tasks = [task for flag in flags for task in _tasks(flag, DestinationKind.POLICE)]
    packet = _packet(tasks)
    assert isinstance(packet, PolicePacket)
    return packet


def _danger(**overrides: Any) -> ModerationFlag:
    child = {"location": {"country": "GB", "force_id": "west-yorkshire"}}
    return _flag(signal("safety", 0.9, immediate_danger=True), child=child, **overrides)


def test_p0_packet_tells_the_sender_to_call_999_now() -> None:
    packet = _police(_danger())
    assert packet.priority is Priority.P0
    assert "call 999 now" in packet.authority.instruction


@pytest.mark.parametrize(
    ("sig", "priority"),
    [
        (signal("coercion", 0.9), Priority.P1),
        (signal("grooming", 0.95), Priority.P2),
        (signal("grooming", 0.7), Priority.P3),
    ],
)
def test_non_p0_packet_says_101_and_not_999(sig: dict[str, Any], priority: Priority) -> None:
    packet = _police(_flag(sig))
    assert packet.priority is priority
    assert "101" in packet.authority.instruction
    assert "999" not in packet.authority.instruction


def test_a_later_p0_flag_makes_the_case_packet_say_999() -> None:
    packet = _police(_flag(signal("grooming", 0.95)), _danger(minutes=5))
    assert packet.priority is Priority.P0
    assert "999" in packet.authority.instruction


@pytest.mark.parametrize("force_id", ["west-yorkshire", "police-scotland", "northern-ireland"])
def test_force_contact_comes_from_the_directory(force_id: str) -> None:
    child = {"location": {"country": "GB", "force_id": force_id}}
    packet = _police(_flag(signal("grooming", 0.95), child=child))
    force = uk_forces().forces[force_id]
    authority = packet.authority
    assert (authority.kind, authority.id, authority.name, authority.phone, authority.website) == (
        "police",
        force.force_id,
        force.name,
        force.phone,
        force.website,
    )


def test_packets_state_that_no_images_are_attached() -> None:
    flag = _flag(
        signal("iioc", 1.0, hash_match=EXTERNAL_EXACT),
        content=[image(public=True)],
        source={"system": "test-hasher", "version": "1", "kind": "hash_match"},
    )
    police = _packet(_tasks(flag, DestinationKind.POLICE))
    iwf = _packet(_tasks(flag, DestinationKind.IWF))
    assert police.no_images_attached == iwf.no_images_attached == NO_IMAGES_STATEMENT
    assert NO_IMAGES_STATEMENT.startswith("No images or other content are attached")
    assert '"no_images_attached":"No images' in police.model_dump_json()


def test_timeline_has_one_entry_per_flag_in_detection_order() -> None:
    flags = [
        _flag(signal("grooming", 0.95), minutes=30),
        _flag(signal("coercion", 0.9), minutes=0),
        _flag(signal("grooming", 0.7), minutes=10),
    ]
    packet = _police(*flags)
    ordered = sorted(flags, key=lambda flag: flag.detected_at)
    assert [entry.flag_id for entry in packet.timeline] == [flag.flag_id for flag in ordered]
    assert [entry.at for entry in packet.timeline] == [flag.detected_at for flag in ordered]
    assert [entry.priority for entry in packet.timeline] == [
        Priority.P1,
        Priority.P3,
        Priority.P2,
    ]
    assert packet.priority is Priority.P1


def test_content_references_carry_hashes_and_urls() -> None:
    content = [image("content-test-a", public=True), image("content-test-b")]
    flag = _flag(signal("grooming", 0.95), content=content)
    packet = _police(flag)
    assert [(c.content_id, c.url, c.public, c.flag_id) for c in packet.content] == [
        ("content-test-a", "https://cdn.example.org/content-test-a", True, flag.flag_id),
        ("content-test-b", None, None, flag.flag_id),
    ]
    assert [c.hashes for c in packet.content] == [c.hashes for c in flag.content]
    assert packet.content[0].hashes.sha256 is not None


def test_subject_ips_are_merged_across_flags_without_duplicates() -> None:
    first = _flag(
        signal("grooming", 0.95),
        subject={**SUBJECT, "ips": ["192.0.2.1", "192.0.2.2"]},
    )
    second = _flag(
        signal("coercion", 0.9),
        minutes=5,
        subject={**SUBJECT, "ips": ["192.0.2.2", "2001:db8::1", "192.0.2.1"]},
    )
    packet = _police(first, second)
    assert packet.subject.ips == [
        ip_address("192.0.2.1"),
        ip_address("192.0.2.2"),
        ip_address("2001:db8::1"),
    ]
    assert packet.subject.account_id == SUBJECT["account_id"]


def test_iwf_packet_lists_only_images_and_videos_with_their_hash_lists() -> None:
    video = {**image("content-test-video", public=True), "media_type": "video"}
    text = {"content_id": "content-test-text", "media_type": "text"}
    flag = _flag(
        signal("iioc", 1.0, hash_match=EXTERNAL_EXACT),
        content=[image("content-test-image"), video, text],
        source={"system": "test-hasher", "version": "1", "kind": "hash_match"},
    )
    packet = _packet(_tasks(flag, DestinationKind.IWF))
    assert isinstance(packet, IwfPacket)
    assert [(item.content_id, item.media_type.value) for item in packet.items] == [
        ("content-test-image", "image"),
        ("content-test-video", "video"),
    ]
    assert all(item.hash_lists == ["synthetic-test-list"] for item in packet.items)
    assert (packet.authority.kind, packet.authority.id) == ("iwf", "iwf")


def _abroad(country: str, *signals: dict[str, Any], **overrides: Any) -> list[Packet]:
    """One packet per intl destination of a flag from an organisation in `country`."""
    platform = {"org_id": "org-test", "service": "chat", "country": country}
    flag = _flag(*signals, platform=platform, **overrides)
    return [_packet([task]) for task in _tasks(flag, DestinationKind.INTL)]


KNOWN_IMAGE = signal("iioc", 1.0, hash_match=EXTERNAL_EXACT)


@pytest.mark.parametrize(
    ("country", "sig", "mechanism", "name"),
    [
        ("US", signal("grooming", 0.95), "ncmec_cybertipline", "NCMEC CyberTipline"),
        (
            "AU",
            signal("grooming", 0.95),
            "accce",
            "Australian Centre to Counter Child Exploitation",
        ),
        ("JP", KNOWN_IMAGE, "internet_hotline_center_jp", "Internet Hotline Center Japan"),
        ("BR", KNOWN_IMAGE, "safernet_brasil", "SaferNet Brasil"),
        ("JP", signal("grooming", 0.95), "local_police", "The local police in Japan"),
        ("KR", signal("grooming", 0.95), "local_police", "The local police in South Korea"),
    ],
)
def test_intl_packet_names_the_mechanism(
    country: str, sig: dict[str, Any], mechanism: str, name: str
) -> None:
    [packet] = _abroad(country, sig, source={"system": "t", "version": "1", "kind": "hash_match"})
    assert (packet.authority.kind, packet.authority.id, packet.authority.name) == (
        "intl",
        mechanism,
        name,
    )


EMERGENCY_NUMBERS = [
    ("US", "911"),
    ("CA", "911"),
    ("FR", "112"),
    ("DE", "112"),
    ("AU", "000"),
    ("NZ", "111"),
    ("JP", "110"),
    ("BR", "190"),
    ("KR", "112"),
]
"""The numbers issue 10 names: what a sender abroad must be told to call."""


@pytest.mark.parametrize(("country", "number"), EMERGENCY_NUMBERS)
def test_a_p0_abroad_opens_with_that_countrys_emergency_number_never_999(
    country: str, number: str
) -> None:
    packets = _abroad(country, signal("coercion", 0.9, immediate_danger=True))
    assert packets, "a P0 abroad has an intl destination"
    for packet in packets:
        text = render_text(packet)
        first = text.splitlines()[0]
        assert first.startswith("A CHILD MAY BE IN IMMEDIATE DANGER: CALL ")
        assert f" {number}" in first, first
        assert packet.authority.emergency_number == number
        assert number in packet.authority.instruction
        assert re.search(r"\b999\b", text) is None, "a UK number in a packet abroad"
        assert "REFERRAL TO THE POLICE ·" not in text, "the UK police title abroad"
    police = packets[0]
    assert police.authority.id == "local_police"
    assert police.authority.instruction.startswith(
        f"A child may be in immediate danger: call the police on {number} now"
    )


@pytest.mark.parametrize(("country", "number"), EMERGENCY_NUMBERS)
def test_a_packet_abroad_names_the_country_and_its_number_not_only_a_code(
    country: str, number: str
) -> None:
    for packet in _abroad(country, signal("grooming", 0.95)):
        name = COUNTRIES[country].name
        text = render_text(packet)
        assert name in text
        assert f"in {country}" not in text
        assert number in packet.authority.instruction
        to = text[text.index("TO: ") : text.index("FROM: ")]
        assert number in to


def test_a_hotline_packet_is_a_report_to_the_hotline_not_a_police_referral() -> None:
    [packet] = _abroad("US", signal("coercion", 0.9))
    text = render_text(packet)
    assert text.startswith("CSAE REPORT TO NCMEC CyberTipline · PRIORITY P1")
    assert "POLICE" not in text.splitlines()[0]
    assert packet.authority.police is False
    assert "not an emergency service" in packet.authority.instruction


def test_a_packet_abroad_carries_no_uk_signposting() -> None:
    """The NSPCC helpline and its "call 999" are for a sender in the UK."""
    for packet in _abroad("US", signal("coercion", 0.9, immediate_danger=True)):
        assert isinstance(packet, PolicePacket)
        assert packet.support is None
        assert "NSPCC" not in render_text(packet)


def test_a_uk_platforms_child_in_danger_abroad_gets_that_countrys_police_first() -> None:
    child = {"age_band": "13_15", "location": {"country": "FR"}}
    danger = _flag(signal("coercion", 0.9, immediate_danger=True), child=child)
    abroad = [_packet([t]) for t in _tasks(danger, DestinationKind.INTL)]
    assert [p.authority.name for p in abroad] == ["The local police in France"]
    instruction = abroad[0].authority.instruction
    # The sender is in the UK, where 112 reaches the UK's services, not France's.
    assert instruction.startswith(
        "A child may be in immediate danger: call the police on 112 now (from outside France: "
        "your own police)"
    )


def test_a_mechanism_this_service_does_not_know_falls_back_to_that_countrys_police() -> None:
    destination = Destination(kind=DestinationKind.INTL, mechanism="newer_hotline", country="XK")
    named = authority(destination, Priority.P0, uk_forces())
    assert (named.id, named.name, named.police) == (
        "newer_hotline",
        "The local police in the country with code XK",
        True,
    )
    assert named.instruction.startswith(
        "A child may be in immediate danger: call the local emergency number now"
    )


def test_a_uk_p0_opens_with_the_999_action_alone_and_no_101_beside_it() -> None:
    text = render_text(_police(_danger()))
    lines = text.splitlines()
    assert lines[:2] == ["A CHILD MAY BE IN IMMEDIATE DANGER: CALL 999 NOW.", ""]
    assert lines[2].startswith("CSAE REFERRAL TO THE POLICE · PRIORITY P0")
    to = text[text.index("TO: ") : text.index("FROM: ")]
    assert "101" not in to
    assert "call 999 now" in to


MACHINE_WORDS = re.compile(r"iioc|13_15|16_17|under_13|self_harm|Suspected safety|\+00:00|T\d\d:")


def test_packets_use_peoples_words_for_criteria_signals_and_ages() -> None:
    child = {"age_band": "13_15", "location": {"country": "GB", "force_id": "west-yorkshire"}}
    sextortion = {**signal("coercion", 0.92), "label": "sextortion_threat"}
    suicidal = {**signal("self_harm", 0.93), "label": "suicidal_ideation"}
    image_match = {**signal("iioc", 1.0, hash_match=EXTERNAL_EXACT), "label": "known_image"}
    flags = [
        _flag(sextortion, child=child),
        _flag(suicidal, child=child, minutes=5),
        _flag(image_match, child=child, minutes=9, content=[image(public=True)]),
    ]
    text = render_text(_police(*flags))
    # The rules keep their ids and conditions in the policy's terms (labelled as such), for
    # whoever checks a rule; everything else is in words.
    why = text[text.index("WHY: ") : text.index("TIMELINE")]
    people = text.replace(why, "")
    assert MACHINE_WORDS.search(people) is None, MACHINE_WORDS.search(people)
    assert "Conditions met, in the policy's terms: " in why
    assert "for indecent images of children" in why
    for words in (
        "sextortion threat",
        "suicidal ideation",
        "Self-harm or suicide risk",
        "Coercion or blackmail (sextortion)",
        "Indecent images of children",
        "aged 13 to 15",
    ):
        assert words in text, words


def test_refer_rules_are_listed_before_review_rules() -> None:
    flags = [
        _flag(signal("iioc", 0.8, shared_externally=True)),
        _flag(signal("coercion", 0.9), minutes=1),
    ]
    packet = _police(*flags)
    outcomes = [rule.outcome for rule in packet.rules]
    assert outcomes == sorted(outcomes, key=lambda outcome: outcome != "refer")
    assert outcomes[0] == "refer"
    assert "review" in outcomes
    text = render_text(packet)
    why = text[text.index("WHY: ") : text.index("TIMELINE")]
    assert why.index(": refer at ") < why.index(": review at ")


def test_one_time_format_everywhere() -> None:
    text = render_text(_police(_flag(signal("coercion", 0.9)), _danger(minutes=5)))
    times = re.findall(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d\S*( UTC)?", text)
    assert times
    assert all(suffix == " UTC" for suffix in times)
    assert "+00:00" not in text


REFERENCE = "REF-" + "X" * 60
"""The longest external reference a case may record (64 characters)."""


def _supplement(*flags: ModerationFlag) -> Supplement:
    return Supplement(
        supplements_version=1,
        external_reference=REFERENCE,
        submitted_at=NOW,
        new_flag_ids=[flag.flag_id for flag in flags],
    )


@pytest.mark.parametrize(
    "destination",
    [
        Destination(kind=DestinationKind.POLICE, force_id="kent"),
        Destination(kind=DestinationKind.POLICE, force_id="merged-constabulary"),
        Destination(kind=DestinationKind.IWF),
        Destination(kind=DestinationKind.INTL, mechanism="local_police", country="US"),
        Destination(kind=DestinationKind.INTL, mechanism="ncmec_cybertipline", country="US"),
    ],
    ids=lambda destination: destination.key,
)
@pytest.mark.parametrize("priority", list(Priority))
def test_a_supplements_action_quotes_the_reference_sent_not_the_case_id(
    destination: Destination, priority: Priority
) -> None:
    flag = _flag(signal("grooming", 0.95))
    first = authority(destination, priority, uk_forces())
    supplement = authority(destination, priority, uk_forces(), supplement=_supplement(flag))
    assert REFERENCE not in first.instruction
    assert REFERENCE in supplement.instruction
    assert "quote the case id" not in supplement.instruction
    number = first.emergency_number or "no number"
    assert (number in supplement.instruction) == (number in first.instruction)


def test_a_supplements_text_says_to_file_it_with_the_referral_sent() -> None:
    flag = _flag(signal("grooming", 0.95))
    text = render_text(_packet(_tasks(flag, DestinationKind.POLICE), _supplement(flag)))
    assert f"SUPPLEMENTARY to packet version 1, sent as {REFERENCE}" in text
    assert "it is not a new one" in text
    assert "quote the case id" not in text


@pytest.mark.parametrize("country", sorted({*COUNTRIES, *MECHANISMS, "XK"}))
def test_every_action_abroad_fits_its_contract_with_the_longest_reference(country: str) -> None:
    """A packet that cannot be built is a referral that cannot be sent."""
    mechanism = MECHANISMS[country].mechanism if country in MECHANISMS else "local_police"
    for chosen in {mechanism, "local_police"}:
        destination = Destination(kind=DestinationKind.INTL, mechanism=chosen, country=country)
        for priority in Priority:
            for supplement in (None, _supplement(_flag(signal()))):
                authority(
                    destination,
                    priority,
                    uk_forces(),
                    supplement=supplement,
                    sender_country="GB",
                )


def test_the_countries_issue_10_names_have_their_emergency_numbers() -> None:
    assert COUNTRIES["GB"].emergency == "999"
    for country, number in EMERGENCY_NUMBERS:
        assert COUNTRIES[country].emergency == number
    assert date.fromisoformat(COUNTRIES_AS_OF).isoformat() == COUNTRIES_AS_OF
    for code, entry in COUNTRIES.items():
        assert re.fullmatch("[A-Z]{2}", code)
        assert re.fullmatch(r"\d{2,5}", entry.emergency), code
        assert entry.source.startswith(("https://", "http://")), code
    assert set(MECHANISMS) <= set(COUNTRIES), "a country with a mechanism but no number"


CONTENT_LIKE = re.compile(
    r"(^|_)(bytes|data|body|image|images|img|text|message|messages|blob|payload|base64|"
    r"thumbnail|file|raw|attachment)(_|$)"
)
STATEMENT_FIELDS = {"no_images_attached"}
"""The fixed statement that nothing is attached: named after images, but holds none."""


def _property_names(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        yield from node.get("properties", {})
        for value in node.values():
            yield from _property_names(value)
    elif isinstance(node, list):
        for value in node:
            yield from _property_names(value)


PACKET_MODELS: list[type[BaseModel]] = [PolicePacket, IwfPacket]


@pytest.mark.parametrize("model", PACKET_MODELS, ids=lambda model: model.__name__)
def test_packet_models_have_no_field_named_for_content(model: type[BaseModel]) -> None:
    names = set(_property_names(model.model_json_schema()))
    assert len(names) > 20
    assert sorted(n for n in names - STATEMENT_FIELDS if CONTENT_LIKE.search(n)) == []


def _unbounded_strings(node: Any, path: str = "") -> Iterator[str]:
    if isinstance(node, dict):
        bounds = ("maxLength", "const", "enum", "format", "pattern")
        if node.get("type") == "string" and not any(key in node for key in bounds):
            yield path
        for key, value in node.items():
            yield from _unbounded_strings(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _unbounded_strings(value, f"{path}/{index}")


@pytest.mark.parametrize("model", PACKET_MODELS, ids=lambda model: model.__name__)
def test_every_string_in_a_packet_is_bounded(model: type[BaseModel]) -> None:
    assert list(_unbounded_strings(model.model_json_schema())) == []
