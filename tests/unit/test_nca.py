"""The NCA destination: who must report there, its tiers and clocks, and what its packet holds."""

from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.flag import ModerationFlag
from schemas.packets import NCA_DECLARATION, EarlierReport, NcaPacket, NcaTier
from schemas.referral import Destination, DestinationKind, Outcome, Priority
from services.domain.deadlines import DEFAULT_DEADLINES, NCA_DEADLINES, Deadlines, for_destination
from services.domain.destinations import NCA
from services.domain.forces import uk_forces
from services.domain.nca import CSEA_CRITERIA, SCHEDULE_1, in_scope_because, tier, uk_links
from services.domain.organisations import Organisation
from services.domain.policy import default_policy
from services.pipeline.settings import Settings
from services.referral.packet_text import render_text
from services.referral.packets import Reporter, build_packet
from services.referral.retention import Periods
from services.router.routing import Routing, route
from tests.factories import image, make_flag, signal
from tests.unit.test_policy_properties import flags

NOW = datetime(2026, 11, 26, 9, 0, 5, tzinfo=UTC)
REPORTER = Reporter(name="Example Ltd", safeguarding_contact="Safeguarding desk, 0000")


def _org(country: str, *reports_to: str) -> Organisation:
    return Organisation.model_validate(
        {
            "org_id": "org-test",
            "name": "Example",
            "safeguarding_contact": "desk",
            "country": country,
            "reports_to": list(reports_to) or ["police", "iwf"],
        }
    )


UK_REGULATED = _org("GB", "police", "iwf", "nca")
US_REGULATED = _org("US", "intl", "nca")
UK_NOT_LISTED = _org("GB")


def _flag(country: str = "GB", **fields: Any) -> ModerationFlag:
    fields.setdefault("signals", [signal("coercion", 0.95)])
    return make_flag(
        platform={"org_id": "org-test", "service": "chat", "country": country}, **fields
    )


def _route(flag: ModerationFlag, organisation: Organisation | None) -> Routing:
    return route(
        flag,
        policy=default_policy(),
        directory=uk_forces(),
        home_force_id="kent",
        now=NOW,
        organisation=organisation,
    )


def _kinds(routing: Routing) -> list[str]:
    return [task.destination.kind.value for task in routing.tasks]


def test_a_uk_regulated_service_reports_csea_content_to_the_nca_beside_the_police() -> None:
    routing = _route(_flag(), UK_REGULATED)
    assert _kinds(routing) == ["police", "nca"]
    nca = routing.tasks[-1]
    assert nca.case_key.endswith("|nca")
    assert routing.decision.destinations[-1] == NCA


def test_a_uk_service_not_listed_as_regulated_does_not_report_to_the_nca() -> None:
    assert _kinds(_route(_flag(), UK_NOT_LISTED)) == ["police"]
    assert _kinds(_route(_flag(), None)) == ["police"]


@pytest.mark.parametrize(
    ("fields", "links"),
    [
        ({"child": {"age_band": "13_15", "location": {"country": "GB"}}}, ["child_in_uk"]),
        ({"subject": {"account_id": "acct-uk", "country": "GB"}}, ["subject_in_uk"]),
        (
            {"subject": {"account_id": "acct-uk", "location": {"country": "GB"}}},
            ["subject_in_uk"],
        ),
    ],
)
def test_a_non_uk_service_reports_uk_linked_content_to_the_nca(
    fields: dict[str, Any], links: list[str]
) -> None:
    flag = _flag("US", **fields)
    assert uk_links(flag) == links
    assert _kinds(_route(flag, US_REGULATED)) == ["intl", "nca"]


def test_a_non_uk_service_does_not_report_content_with_no_uk_link_to_the_nca() -> None:
    flag = _flag(
        "US",
        subject={"account_id": "acct-us", "country": "US", "ips": ["192.0.2.1"]},
        child={"age_band": "13_15", "location": {"country": "US"}},
    )
    assert uk_links(flag) == []
    assert in_scope_because(flag, US_REGULATED) == []
    assert "nca" not in _kinds(_route(flag, US_REGULATED))


def test_self_harm_alone_is_not_csea_content_and_goes_to_the_police_only() -> None:
    flag = _flag(signals=[signal("self_harm", 0.95)])
    assert _kinds(_route(flag, UK_REGULATED)) == ["police"]


def test_nca_tiers_follow_our_priority() -> None:
    assert [tier(p) for p in Priority] == [
        NcaTier.IMMEDIATELY,
        NcaTier.IMMEDIATELY,
        NcaTier.AS_SOON_AS_REASONABLY_PRACTICABLE,
        NcaTier.WITHOUT_UNDUE_DELAY,
    ]


def test_nca_clocks_are_their_own_and_never_later_than_the_configured_ones() -> None:
    nca = for_destination(DestinationKind.NCA)
    assert nca[Priority.P1].submitted == timedelta(hours=1)
    assert nca[Priority.P2].submitted == timedelta(hours=24)
    assert nca[Priority.P3].submitted == timedelta(hours=72)
    assert for_destination(DestinationKind.POLICE) is DEFAULT_DEADLINES
    tighter = {**DEFAULT_DEADLINES, Priority.P3: Deadlines(ready=timedelta(minutes=1),
               submitted=timedelta(hours=2), review=timedelta(hours=1))}  # fmt: skip
    assert for_destination(DestinationKind.NCA, tighter)[Priority.P3].submitted == timedelta(
        hours=2
    )


@given(st.sampled_from(list(Priority)), st.sampled_from(["ready", "submitted", "review"]))
def test_an_nca_stage_is_due_no_later_than_the_police_stage(priority: Priority, stage: str) -> None:
    nca = getattr(for_destination(DestinationKind.NCA)[priority], stage)
    assert nca <= getattr(DEFAULT_DEADLINES[priority], stage)
    assert nca == min(nca, getattr(NCA_DEADLINES[priority], stage))


def test_an_nca_task_is_due_by_the_nca_clock() -> None:
    routing = _route(_flag(signals=[signal("coercion", 0.95)]), UK_REGULATED)
    police, nca = routing.tasks
    assert police.priority is nca.priority is Priority.P1
    assert police.due_at == police.detected_at + DEFAULT_DEADLINES[Priority.P1].ready
    assert nca.due_at == nca.detected_at + NCA_DEADLINES[Priority.P1].ready


def _packet(flag: ModerationFlag, organisation: Organisation = UK_REGULATED) -> NcaPacket:
    tasks = [t for t in _route(flag, organisation).tasks if t.destination == NCA]
    packet = build_packet(
        case_id=UUID(int=1),
        version=1,
        destination=NCA,
        tasks=tasks,
        reporter=REPORTER,
        directory=uk_forces(),
        now=NOW,
    )
    assert isinstance(packet, NcaPacket)
    return packet


def test_the_packet_names_every_schedule_item_given_or_not_available() -> None:
    packet = _packet(_flag())
    assert [item.item for item in packet.schedule_1] == [item.item for item in SCHEDULE_1]
    state = {item.item: item.available for item in packet.schedule_1}
    given = {name for name, available in state.items() if available}
    assert {"reporter", "declaration", "account_identifiers", "login_ips"} <= given
    assert not {"upload_port", "url", "earlier_reports"} & given
    for item in packet.schedule_1:
        assert item.available == bool(item.fields)
        assert item.available or item.note
    assert packet.declaration == NCA_DECLARATION
    assert packet.tier is NcaTier.IMMEDIATELY


def test_the_packet_gives_content_items_when_the_flags_have_them() -> None:
    content = image("content-nca-1", public=True) | {"uploader_ip": "198.51.100.9"}
    packet = _packet(_flag(signals=[signal("iioc", 0.99)], content=[content]))
    state = {item.item: item.available for item in packet.schedule_1}
    given = {name for name, available in state.items() if available}
    assert {"upload_time", "upload_ip", "url", "hashes"} <= given
    assert "upload_port" not in given


def test_a_non_uk_services_packet_says_why_it_is_in_scope() -> None:
    flag = _flag("US", child={"age_band": "13_15", "location": {"country": "GB"}})
    packet = _packet(flag, US_REGULATED)
    assert packet.service.in_scope_because == ["child_in_uk"]
    assert packet.service.organisation_country == "US"
    text = render_text(packet)
    assert "in scope because: child_in_uk" in text
    assert "upload_port, the port number it was uploaded from: NOT AVAILABLE" in text


def test_a_p0_nca_packet_opens_with_the_999_call() -> None:
    flag = _flag(
        signals=[signal("coercion", 0.95, immediate_danger=True)],
        child={"age_band": "13_15", "location": {"country": "GB", "postcode_district": "B1"}},
    )
    packet = _packet(flag)
    assert packet.priority is Priority.P0
    assert render_text(packet).startswith("A CHILD MAY BE IN IMMEDIATE DANGER: CALL 999 NOW.")


@settings(max_examples=300, deadline=None)
@given(flags(), st.sampled_from([UK_REGULATED, US_REGULATED, UK_NOT_LISTED]))
def test_the_nca_gets_a_task_exactly_when_the_organisation_must_report_there(
    flag: ModerationFlag, organisation: Organisation
) -> None:
    """For any flag: a task to the NCA when, and only when, the flag is referred or reviewed
    under a CSEA criterion (evidence that only earned a review goes to the NCA as a review) and
    the organisation is a regulated service in scope for it; the other destinations are those
    routing gives without the NCA; the NCA's is due by its clock."""
    with_nca = _route(flag, organisation)
    without = _route(flag, None)
    to_nca = [t for t in with_nca.tasks if t.destination == NCA]
    others = [t for t in with_nca.tasks if t.destination != NCA]
    assert others == list(without.tasks)
    decision = without.decision
    csea = decision.outcome is not Outcome.NONE and not CSEA_CRITERIA.isdisjoint(decision.criteria)
    uk = organisation.country == "GB" or bool(uk_links(flag))
    assert bool(to_nca) == (csea and uk and organisation is not UK_NOT_LISTED)
    for task in to_nca:
        clock = for_destination(DestinationKind.NCA)[task.priority]
        due = clock.ready if task.decision == "refer" else clock.review
        assert task.due_at == task.detected_at + due
        assert task.case_key == f"org-test|{flag.subject.account_id}|nca"


def test_a_hotline_packet_to_ncmec_names_the_nca_report_in_its_text() -> None:
    flag = _flag("US", signals=[signal("coercion", 0.95)])
    ncmec = Destination(kind=DestinationKind.INTL, mechanism="ncmec_cybertipline", country="US")
    tasks = [t for t in _route(flag, US_REGULATED).tasks if t.destination == ncmec]
    earlier = EarlierReport(
        receiver="nca",
        reference="NCA-2026-000042",
        submitted_at=NOW,
        case_id=UUID(int=8),
        packet_version=1,
    )
    packet = build_packet(
        case_id=UUID(int=2),
        version=1,
        destination=ncmec,
        tasks=tasks,
        reporter=REPORTER,
        directory=uk_forces(),
        now=NOW,
        earlier_reports=[earlier],
    )
    assert packet.kind == "police"
    text = render_text(packet)
    assert "EARLIER REPORTS OF THIS SUBJECT" in text
    assert "  - NCA reference NCA-2026-000042, sent 2026-11-26 09:00:05 UTC" in text


@given(st.dates(min_value=date(2026, 4, 7), max_value=date(2100, 12, 31)))
def test_the_default_retention_keeps_the_nca_periods_in_calendar_years(closed: date) -> None:
    """Closing comes after the report: kept from closing for at least a calendar year (the
    information sent) and five (the NCA reference), leap days included, by the defaults of
    the worker's settings and of `retention.Periods`."""
    fields = Settings.model_fields
    defaults = Settings.model_construct(
        **{name: fields[name].default for name in fields if name.startswith("retention_")}
    )
    for periods in (Periods(), Periods(*defaults.retention())):
        at = datetime.combine(closed, datetime.min.time(), UTC)
        assert at + periods.closed >= _years_on(at, 1)
        assert at + periods.reference >= _years_on(at, 5)


def _years_on(at: datetime, years: int) -> datetime:
    """The same day `years` on (29 February on to 1 March in a year with none)."""
    try:
        return at.replace(year=at.year + years)
    except ValueError:
        return at.replace(year=at.year + years, month=3, day=1)
