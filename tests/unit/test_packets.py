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
from services.domain.countries import COUNTRIES, COUNTRIES_AS_OF, UK_EMERGENCY
from services.domain.forces import uk_forces
from services.domain.mechanisms import MECHANISMS
from services.domain.policy import default_policy
from services.referral import escalation, packet_text, packets
from services.referral import packet_words as words
from services.referral.escalation import Escalator
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
    ("FR", "17"),
    ("DE", "110"),
    ("AU", "000"),
    ("NZ", "111"),
    ("JP", "110"),
    ("BR", "190"),
    ("KR", "112"),
]
"""The numbers issue 10 names, and the police's own where they have one (France's 17,
Germany's 110): what a person there must be told to call."""


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
    # The sender is in the UK, where 17 reaches no one and 112 the UK's services, not France's.
    assert instruction.startswith(
        "A child may be in immediate danger: call 999, your emergency number in the United "
        "Kingdom, now, and ask your police to contact the police in France (17 there)."
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
    for phrase in (
        "sextortion threat",
        "suicidal ideation",
        "Self-harm or suicide risk",
        "Coercion or blackmail (sextortion)",
        "Indecent images of children",
        "aged 13 to 15",
    ):
        assert phrase in text, phrase


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


def _reported(flag: ModerationFlag) -> Supplement:
    """A supplement to a P0 already reported, whose new flag is not P0."""
    return _supplement(flag).model_copy(update={"new_priority": Priority.P3})


def _every_action(destination: Destination, *senders: str) -> None:
    """Build the authority for every priority, supplement and sender: none may fail."""
    flag = _flag(signal())
    for priority in Priority:
        for supplement in (None, _supplement(flag), _reported(flag)):
            for sender in senders:
                authority(
                    destination, priority, uk_forces(), supplement=supplement, sender_country=sender
                )


@pytest.mark.parametrize("country", sorted({*COUNTRIES, *MECHANISMS, "XK"}))
def test_every_action_abroad_fits_its_contract_with_the_longest_reference(country: str) -> None:
    """A packet that cannot be built is a referral that cannot be sent."""
    mechanism = MECHANISMS[country].mechanism if country in MECHANISMS else "local_police"
    for chosen in {mechanism, "local_police"}:
        destination = Destination(kind=DestinationKind.INTL, mechanism=chosen, country=country)
        _every_action(destination, "GB", "AE", "XK", country)


@pytest.mark.parametrize("sender", sorted({*COUNTRIES, "XK"}))
def test_every_action_to_a_uk_force_or_the_iwf_fits_from_any_sender(sender: str) -> None:
    for destination in (
        Destination(kind=DestinationKind.POLICE, force_id="devon-and-cornwall"),
        Destination(kind=DestinationKind.POLICE, force_id="merged-constabulary"),
        Destination(kind=DestinationKind.IWF),
    ):
        _every_action(destination, sender)


def test_the_countries_issue_10_names_have_their_emergency_numbers() -> None:
    assert COUNTRIES["GB"].emergency == "999"
    for country, number in EMERGENCY_NUMBERS:
        assert COUNTRIES[country].dial == number
    assert date.fromisoformat(COUNTRIES_AS_OF).isoformat() == COUNTRIES_AS_OF
    for code, entry in COUNTRIES.items():
        assert re.fullmatch("[A-Z]{2}", code)
        assert re.fullmatch(r"\d{2,5}", entry.emergency), code
        assert entry.source.startswith(("https://", "http://")), code
        if entry.police:
            assert re.fullmatch(r"\d{2,5}", entry.police.number), code
            assert entry.police.number != entry.emergency, code
            assert entry.police.source.startswith(("https://", "http://")), code
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


# Review findings on items 3 and 5 of issue 10.

CHILD_IN_US = {"age_band": "under_13", "location": {"country": "US"}}
CHILD_IN_LEEDS = {"age_band": "13_15", "location": {"country": "GB", "postcode_district": "LS1"}}
US_ORG = {"org_id": "org-test-us", "service": "chat", "country": "US"}


def test_a_uk_sender_with_a_child_in_the_us_calls_999_not_911() -> None:
    danger = _flag(signal("coercion", 0.9, immediate_danger=True), child=CHILD_IN_US)
    [packet] = [_packet([t]) for t in _tasks(danger, DestinationKind.INTL)]
    text = render_text(packet)
    first = text.splitlines()[0]
    assert first.startswith(
        "A CHILD MAY BE IN IMMEDIATE DANGER: CALL 999, YOUR EMERGENCY NUMBER IN THE UNITED "
        "KINGDOM, NOW, AND ASK YOUR POLICE TO CONTACT THE POLICE IN THE UNITED STATES (911 THERE)."
    )
    assert "CALL 911," not in first
    assert (packet.authority.sender_country, packet.authority.sender_emergency_number) == (
        "GB",
        "999",
    )
    # The NSPCC helpline is for the sender, who is in the UK.
    assert isinstance(packet, PolicePacket)
    assert packet.support is not None
    assert "NSPCC" in text


def test_a_us_sender_with_a_child_in_the_uk_calls_911_not_999() -> None:
    danger = _flag(
        signal("coercion", 0.9, immediate_danger=True), platform=US_ORG, child=CHILD_IN_LEEDS
    )
    [packet] = _tasks_packets(danger, DestinationKind.POLICE)
    text = render_text(packet)
    first = text.splitlines()[0]
    assert packet.authority.id == "west-yorkshire"
    assert first.startswith(
        "A CHILD MAY BE IN IMMEDIATE DANGER: CALL 911, YOUR EMERGENCY NUMBER IN THE UNITED "
        "STATES, NOW, AND ASK YOUR POLICE TO CONTACT THE POLICE IN THE UNITED KINGDOM (999 THERE)."
    )
    assert "CALL 999 NOW" not in text
    assert "call 911, your emergency number in the United States, now" in (
        packet.authority.instruction
    )
    assert "It works only in the United Kingdom. From the United States, call 911" in text
    # No UK helpline for a sender in the United States, though the receiver is a UK force.
    assert isinstance(packet, PolicePacket)
    assert packet.support is None
    assert "NSPCC" not in text


def _tasks_packets(flag: ModerationFlag, kind: DestinationKind) -> list[Packet]:
    return [_packet([task]) for task in _tasks(flag, kind)]


def test_a_uk_sender_reporting_to_a_uk_force_gets_no_from_abroad_line() -> None:
    text = render_text(_police(_danger()))
    assert "YOUR EMERGENCY NUMBER" not in text
    assert "It works only in" not in text


def test_immediate_danger_is_never_relabelled_as_self_harm() -> None:
    """A P0 for a child in danger now, then an unconfirmed self-harm flag: the case's safety
    criterion still says immediate danger, and the self-harm part is marked as held."""
    child = {"location": {"country": "GB", "force_id": "west-yorkshire"}}
    danger = _flag(signal("coercion", 0.9, immediate_danger=True), child=child)
    self_harm = _flag(signal("self_harm", 0.6), child=child, minutes=5)
    packet = _police(danger, self_harm)
    text = render_text(packet)
    criteria = text[text.index("CRITERIA") : text.index("WHY: ")]
    assert (
        "  - A child in immediate danger (a risk to a child's safety), self-harm or suicide "
        in (criteria)
    )
    assert "self-harm or suicide risk included (held for a person's review by the policy)" in (
        criteria
    )
    assert "\n  - Self-harm or suicide risk\n" not in criteria
    why = text[text.index("WHY: ") : text.index("TIMELINE")]
    assert "immediate-danger: refer at P0, for a child in immediate danger" in why
    assert "self-harm-medium: review at P2 (a person confirms first), for self-harm or " in why
    assert "a child in immediate danger" in packet.summary


def test_each_rule_is_worded_from_its_own_signals() -> None:
    child = {"location": {"country": "GB", "force_id": "west-yorkshire"}}
    packet = _police(
        _flag(signal("self_harm", 0.9), child=child),
        _flag(signal("safety", 0.9), child=child, minutes=1),
    )
    text = render_text(packet)
    assert "self-harm-high: refer at P1, for self-harm or suicide risk" in text
    assert (
        "safety-high: refer at P2, for a risk to a child's safety (crime or serious harm)" in text
    )
    assert (
        "  - A risk to a child's safety (crime or serious harm), self-harm or suicide risk "
        "included\n"
    ) in text


def test_self_harm_alone_is_named_as_such() -> None:
    packet = _police(_flag(signal("self_harm", 0.9)))
    assert "  - Self-harm or suicide risk\n" in render_text(packet)


def _supplement_after(sent: ModerationFlag, new: ModerationFlag, kind: DestinationKind) -> Packet:
    tasks = [*_tasks(sent, kind), *_tasks(new, kind)]
    return build_packet(
        case_id=CASE_ID,
        version=2,
        destination=tasks[0].destination,
        tasks=tasks,
        reporter=REPORTER,
        directory=uk_forces(),
        now=NOW,
        supplement=_supplement(new),
    )


def test_a_p0_supplement_without_a_new_p0_does_not_ask_for_999_again_first() -> None:
    """A P3 grooming flag added to a P0 case already reported: via 101, quoting the reference;
    999 again only if a child is in danger now."""
    packet = _supplement_after(
        _danger(), _flag(signal("grooming", 0.7), minutes=5), DestinationKind.POLICE
    )
    text = render_text(packet)
    first = text.splitlines()[0]
    assert packet.priority is Priority.P0
    assert packet.supplement is not None
    assert packet.supplement.new_priority is Priority.P3
    assert first == (
        f"ALREADY REPORTED AS AN EMERGENCY UNDER {REFERENCE}: SEND THIS VIA 101, QUOTING "
        f"{REFERENCE}. IF A CHILD IS IN DANGER NOW, CALL 999 AGAIN."
    )
    assert "CALL 999 NOW" not in text
    instruction = packet.authority.instruction
    assert instruction.startswith(f"Already reported as an emergency under {REFERENCE}: call 101")
    assert instruction.endswith("If a child is in danger now, call 999 again.")
    assert packet.authority.phone == "101"


def test_a_p0_supplement_with_a_new_p0_asks_for_999_now() -> None:
    packet = _supplement_after(
        _flag(signal("grooming", 0.95)), _danger(minutes=5), DestinationKind.POLICE
    )
    assert render_text(packet).startswith("A CHILD MAY BE IN IMMEDIATE DANGER: CALL 999 NOW.\n")
    assert "call 999 now" in packet.authority.instruction


def test_a_p0_supplement_abroad_without_a_new_p0_says_it_was_reported() -> None:
    french = {"org_id": "org-test-fr", "service": "chat", "country": "FR"}
    child = {"location": {"country": "FR"}}
    packet = _supplement_after(
        _flag(signal("coercion", 0.9, immediate_danger=True), platform=french, child=child),
        _flag(signal("coercion", 0.9), platform=french, child=child, minutes=5),
        DestinationKind.INTL,
    )
    text = render_text(packet)
    assert packet.authority.name == "The local police in France"
    assert text.splitlines()[0] == (
        f"ALREADY REPORTED AS AN EMERGENCY UNDER {REFERENCE}: SEND THIS AS FURTHER INFORMATION, "
        f"QUOTING {REFERENCE}. IF A CHILD IS IN DANGER NOW, CALL 17 AGAIN."
    )
    assert packet.authority.instruction.endswith(
        "If a child is in danger now, call the police on 17 again."
    )


def test_a_reported_emergency_abroad_from_the_uk_is_called_in_again_from_the_uk() -> None:
    flag = _flag(signal())
    who = authority(
        Destination(kind=DestinationKind.INTL, mechanism="local_police", country="FR"),
        Priority.P0,
        uk_forces(),
        supplement=_reported(flag),
        sender_country="GB",
    )
    assert who.instruction.endswith(
        "If a child is in danger now, call 999, your emergency number in the United Kingdom, "
        "again, and ask your police to contact the police in France (17 there)."
    )


def _reviewed(*flags: ModerationFlag, reviewed_at: datetime | None) -> PolicePacket:
    tasks = [task for flag in flags for task in _tasks(flag, DestinationKind.POLICE)]
    packet = build_packet(
        case_id=CASE_ID,
        version=1,
        destination=tasks[0].destination,
        tasks=tasks,
        reporter=REPORTER,
        directory=uk_forces(),
        now=NOW + timedelta(hours=1),
        reviewed_at=reviewed_at,
    )
    assert isinstance(packet, PolicePacket)
    return packet


def test_a_flag_held_for_review_says_so_and_never_not_confirmed() -> None:
    packet = _reviewed(_flag(signal("grooming", 0.7)), reviewed_at=None)
    text = render_text(packet)
    assert "not confirmed by a person" not in text
    assert "· P3 · held for a person's review by the policy\n" in text
    assert "  - Grooming (held for a person's review by the policy)\n" in text
    assert "grooming (held for a person's review by the policy)" in packet.summary


def test_a_case_a_person_approved_says_who_confirmed_what_and_when() -> None:
    """Routing is at NOW: a review routed before the approval is confirmed, one after is not."""
    approved = NOW + timedelta(minutes=1)
    early = _flag(signal("grooming", 0.7))
    referred = _flag(signal("coercion", 0.9), minutes=1)
    packet = _reviewed(early, referred, reviewed_at=approved)
    text = render_text(packet)
    when = words.at(approved)
    assert f"held for a person's review by the policy, confirmed by a person at {when}" in text
    assert f"  - Grooming (held for review by the policy, confirmed by a person at {when})" in text
    later = _reviewed(early, reviewed_at=NOW - timedelta(minutes=1))
    assert "confirmed by a person" not in render_text(later)


def test_a_referred_criterion_is_not_marked_as_held() -> None:
    packet = _reviewed(
        _flag(signal("grooming", 0.7)), _flag(signal("grooming", 0.95), minutes=1), reviewed_at=None
    )
    assert "  - Grooming\n" in render_text(packet)


def test_a_police_number_is_given_first_with_the_general_one_beside_it() -> None:
    [packet] = _abroad("DE", signal("coercion", 0.9, immediate_danger=True))
    text = render_text(packet)
    assert text.splitlines()[0] == (
        "A CHILD MAY BE IN IMMEDIATE DANGER: CALL 110, THE POLICE'S NUMBER IN GERMANY, NOW "
        "(112 ALSO WORKS)."
    )
    assert "  Emergency number in Germany: 110 (police; 112 also works)\n" in text
    assert (packet.authority.emergency_number, packet.authority.emergency_also) == ("110", "112")


def test_canada_is_sourced_to_canada() -> None:
    assert COUNTRIES["CA"].official
    assert "fcc.gov" not in COUNTRIES["CA"].source
    assert COUNTRIES["CA"].source.startswith("https://crtc.gc.ca/")


def test_a_uk_p0_says_a_child_may_be_in_danger_not_is() -> None:
    instruction = _police(_danger()).authority.instruction
    assert instruction.startswith("A child may be in immediate danger: call 999 now.")
    assert "A child is in immediate danger" not in instruction


def test_a_hotline_names_the_police_number_and_says_it_is_not_an_emergency_service() -> None:
    [packet] = _abroad("US", signal("coercion", 0.9))
    assert (
        "  Police emergency number in the United States: 911. NCMEC CyberTipline is not an "
        "emergency service.\n"
    ) in render_text(packet)


def test_a_number_is_kept_when_the_country_name_is_missing() -> None:
    packet = _abroad("US", signal("coercion", 0.9, immediate_danger=True))[0]
    stored = packet.model_copy(
        update={
            "authority": packet.authority.model_copy(
                update={"country": None, "country_name": None, "sender_country": None}
            )
        }
    )
    text = render_text(stored)
    assert text.splitlines()[0] == (
        "A CHILD MAY BE IN IMMEDIATE DANGER: CALL 911, THE LOCAL EMERGENCY NUMBER, NOW."
    )
    assert "  Emergency number: 911\n" in text


def test_support_on_a_p0_does_not_ask_whether_to_report() -> None:
    for packet in (_police(_danger()), _police(_flag(signal("grooming", 0.95)))):
        text = render_text(packet)
        support = text[text.index("SUPPORT\n") :]
        assert ("Not sure whether to report" in support) is (packet.priority is not Priority.P0)


def test_the_iwf_packet_is_from_the_latest_flags_organisation_as_the_police_packet_is() -> None:
    def shared(org: str, minutes: int) -> ModerationFlag:
        return _flag(
            signal("iioc", 1.0, hash_match=EXTERNAL_EXACT),
            content=[image(public=True)],
            source={"system": "test-hasher", "version": "1", "kind": "hash_match"},
            platform={"org_id": org, "service": "chat", "country": "GB"},
            minutes=minutes,
        )

    flags = (shared("org-test-new", 5), shared("org-test-old", 0))
    iwf = _packet([t for f in flags for t in _tasks(f, DestinationKind.IWF)])
    police = _packet([t for f in flags for t in _tasks(f, DestinationKind.POLICE)])
    assert iwf.organisation.org_id == police.organisation.org_id == "org-test-new"


def test_the_uk_emergency_number_is_defined_once() -> None:
    assert not hasattr(packet_text, "_UK_EMERGENCY")
    assert not hasattr(packets, "UK_EMERGENCY") or packets.UK_EMERGENCY is UK_EMERGENCY


def _escalated(child: dict[str, Any]) -> tuple[list[ReferralTask], list[ReferralTask]]:
    """A coercion flag, then a self-harm flag about the same child, through a UK organisation's
    police case: the case's tasks (the escalation's among them) and the escalation's tasks for
    other destinations."""
    escalator = Escalator(default_policy(), uk_forces(), HOME)
    subject = {"account_id": "acct-test-escalated"}
    flags = [
        _flag(signal("coercion", 0.92), subject=subject, child=child),
        _flag(signal("self_harm", 0.93), subject=subject, child=child, minutes=8),
    ]
    destination = _tasks(flags[0], DestinationKind.POLICE)[0].destination
    case: list[ReferralTask] = []
    elsewhere: list[ReferralTask] = []
    ledger: escalation.Ledger = {}
    for flag in flags:
        arriving = [t for t in _tasks(flag, DestinationKind.POLICE) if t.destination == destination]
        done = escalation.escalate(
            escalator,
            destination=destination,
            case_version=default_policy().version,
            ledger=ledger,
            arriving=arriving,
            now=NOW,
        )
        ledger = done.ledger
        case += [*arriving, *(t for t in done.tasks if t.destination == destination)]
        elsewhere += [t for t in done.tasks if t.destination != destination]
    return case, elsewhere


def test_an_escalation_is_a_line_of_its_own_not_one_more_flag() -> None:
    tasks, _ = _escalated({"location": {"country": "GB", "force_id": "west-yorkshire"}})
    packet = _packet(tasks)
    assert isinstance(packet, PolicePacket)
    assert packet.priority is Priority.P0
    assert "2 flags" in packet.summary
    assert "sextortion-with-self-harm" in packet.summary
    text = render_text(packet)
    lines = text.splitlines()
    assert lines[0] == "A CHILD MAY BE IN IMMEDIATE DANGER: CALL 999 NOW."
    assert lines[4].startswith("ESCALATED to P0 at ")
    assert ": sextortion-with-self-harm, from flags " in lines[4]
    assert lines[4].endswith("(coercion or blackmail with self-harm or suicide risk).")
    assert text.count(" · ESCALATED to P0: sextortion-with-self-harm, from flags ") == 1
    flags = [e for e in packet.timeline if e.escalation is None]
    assert len(flags) == 2
    assert all(e.priority is Priority.P1 for e in flags)


def test_an_escalation_alone_at_the_emergency_route_shows_the_flag_that_completed_it() -> None:
    """A UK organisation's child in France: the escalation's P0 goes to the French police, whose
    case holds that task alone."""
    _, elsewhere = _escalated({"location": {"country": "FR"}})
    french = [t for t in elsewhere if t.destination.country == "FR"]
    packet = _packet(french)
    assert isinstance(packet, PolicePacket)
    text = render_text(packet)
    assert "1 flag," in packet.summary
    assert " · ESCALATED to P0: sextortion-with-self-harm, from flags " in text
    assert "Found by test-classifier (a classifier): test self harm" in text
    assert text.splitlines()[0].startswith("A CHILD MAY BE IN IMMEDIATE DANGER: CALL 999, YOUR ")
