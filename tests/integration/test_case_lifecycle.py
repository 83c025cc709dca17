"""The case lifecycle on the real PostgreSQL: every transition through the API, supplementary
packets after submission, and the SLA clocks swept with an injected clock (no wall-clock sleeps).
"""

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote
from uuid import UUID, uuid4

import httpx
import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.referral import Priority, ReferralTask
from services.domain.deadlines import DEFAULT_DEADLINES
from services.domain.forces import uk_forces
from services.pipeline.metrics import Metrics
from services.referral import store
from services.referral.api import create_app
from services.referral.enums import CaseStatus, Stage
from services.referral.keys import Role, create_key
from services.referral.models import Case, Task
from services.referral.sweep import SWEEP_LOCK
from services.referral.worker import SlaSweeper, TaskRecorder
from tests.factories import DETECTED_AT, make_flag, signal
from tests.infra import isolated_settings
from tests.integration.test_cases_store import REPORTER, routed


@dataclass
class Clock:
    """A clock the test moves by hand."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Api:
    client: httpx.AsyncClient
    clock: Clock
    auth: dict[str, str]
    viewer: dict[str, str]
    metrics: Any

    async def move(self, case_id: UUID, to: str, **fields: object) -> httpx.Response:
        return await self.client.post(
            f"/v1/cases/{case_id}/transitions", json={"to": to, **fields}, headers=self.auth
        )

    async def case(self, case_id: UUID) -> dict[str, Any]:
        response = await self.client.get(f"/v1/cases/{case_id}", headers=self.auth)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


async def _api(url: str, tmp_path: Path) -> AsyncIterator[Api]:
    keys = tmp_path / "keys"
    key = create_key(keys, Role.INVESTIGATOR)
    viewer = create_key(keys, Role.VIEWER)
    clock = Clock(DETECTED_AT + timedelta(minutes=2))
    app = create_app(isolated_settings(url, api_keys_file=keys), clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield Api(
                client,
                clock,
                {"Authorization": f"Bearer {key}"},
                {"Authorization": f"Bearer {viewer}"},
                client,
            )


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async for value in _api(database_url, tmp_path):
        yield value


@pytest.fixture
async def own_api(own_database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async for value in _api(own_database_url, tmp_path):
        yield value


def account() -> dict[str, Any]:
    return {"account_id": f"acct-life-{uuid4().hex[:8]}", "ips": ["192.0.2.9"]}


def at(minutes: float) -> str:
    moment = (DETECTED_AT + timedelta(minutes=minutes)).isoformat()
    return moment


async def apply(
    sessions: async_sessionmaker[AsyncSession], tasks: list[ReferralTask], now: datetime
) -> UUID:
    async with sessions() as session, session.begin():
        applied = await store.apply_tasks(session=session, tasks=tasks, now=now)
    return applied[0].case_id


async def move(
    sessions: async_sessionmaker[AsyncSession],
    case_id: UUID,
    to: CaseStatus,
    now: datetime,
    **fields: Any,
) -> store.Moved:
    """A person's move straight through the service, at `now`."""
    async with sessions() as session, session.begin():
        return await store.transition_case(
            session=session,
            case_id=case_id,
            to=to,
            actor="investigator:test",
            now=now,
            packets=store.CaseConfig(reporter=REPORTER, directory=uk_forces()),
            **fields,
        )


def police_tasks(*, minutes: float | None = None, **flag: Any) -> list[ReferralTask]:
    """The police tasks of a flag; with `minutes`, detected that long after DETECTED_AT."""
    if minutes is not None:
        flag |= {"detected_at": at(minutes), "published_at": at(minutes)}
    return [t for t in routed(make_flag(**flag)).tasks if t.destination.kind.value == "police"]


async def test_a_review_case_is_approved_submitted_acknowledged_and_closed(
    api: Api, sessions: async_sessionmaker[AsyncSession]
) -> None:
    tasks = police_tasks(subject=account(), signals=[signal("grooming", 0.7)])
    case_id = await apply(sessions, tasks, api.clock.now)
    opened = await api.case(case_id)
    assert (opened["status"], opened["packet_version"], opened["due_stage"]) == (
        "review",
        0,
        "review",
    )
    assert opened["allowed_transitions"] == ["ready", "dismissed"]
    assert "0808 800 5000" in opened["guidance"], "a reviewer is signposted to the NSPCC"

    moments = {}
    steps: list[tuple[str, dict[str, object]]] = [
        ("ready", {"note": "grooming pattern confirmed by a second reviewer"}),
        ("submitted", {"external_reference": "KNT-20261126-0042", "packet_version": 1}),
        ("acknowledged", {}),
        ("closed", {"note": "force confirmed it has taken the case on"}),
    ]
    for step, (to, fields) in enumerate(steps, start=1):
        api.clock.now = DETECTED_AT + timedelta(hours=step)
        moments[to] = api.clock.now
        response = await api.move(case_id, to, **fields)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == to

    closed = await api.case(case_id)
    for to, column in [
        ("ready", "reviewed_at"),
        ("ready", "ready_at"),
        ("submitted", "submitted_at"),
        ("acknowledged", "acknowledged_at"),
        ("closed", "closed_at"),
    ]:
        assert datetime.fromisoformat(closed[column]) == moments[to], column
    assert closed["external_reference"] == "KNT-20261126-0042"
    assert (closed["packet_version"], closed["submitted_version"]) == (1, 1)
    assert closed["due_at"] is None
    assert closed["allowed_transitions"] == []
    assert closed["guidance"] is None
    history = closed["transitions"]
    assert [(h["from_status"], h["to_status"]) for h in history] == [
        (None, "review"),
        ("review", "ready"),
        ("ready", "submitted"),
        ("submitted", "acknowledged"),
        ("acknowledged", "closed"),
    ]
    assert history[0]["actor"] == "system"
    assert {h["actor"] for h in history[1:]} == {history[1]["actor"]}
    assert history[1]["actor"].startswith("investigator:")
    assert history[1]["note"] == "grooming pattern confirmed by a second reviewer"
    assert history[2]["external_reference"] == "KNT-20261126-0042"
    assert history[1]["packet_version"] == 1, "approval builds the first packet"

    packet = await api.client.get(f"/v1/cases/{case_id}/packets/1", headers=api.auth)
    assert packet.json()["timeline"][0]["decision"] == "review"
    assert "0808 800 5000" in packet.json()["support"]
    text = await api.client.get(
        f"/v1/cases/{case_id}/packets/1", headers=api.auth, params={"format": "text"}
    )
    approved = moments["ready"].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert f"confirmed by a person at {approved}" in text.text, "the packet says who confirmed"


async def test_dismissing_needs_a_reason_and_a_dismissed_case_is_final(
    api: Api, sessions: async_sessionmaker[AsyncSession]
) -> None:
    case_id = await apply(
        sessions, police_tasks(subject=account(), signals=[signal("grooming", 0.7)]), api.clock.now
    )
    missing = await api.move(case_id, "dismissed")
    assert (missing.status_code, (await api.case(case_id))["status"]) == (400, "review")
    assert "reason" in missing.json()["detail"]

    dismissed = await api.move(case_id, "dismissed", note="adult accounts on both sides")
    assert dismissed.status_code == 200
    assert dismissed.json()["dismissed_at"] == dismissed.json()["reviewed_at"] is not None
    again = await api.move(case_id, "ready")
    assert again.status_code == 409
    assert again.json()["detail"] == "the case is dismissed, a final state: it cannot move to ready"


async def test_illegal_moves_answer_409_naming_the_state_and_the_allowed_moves(
    api: Api, sessions: async_sessionmaker[AsyncSession]
) -> None:
    case_id = await apply(
        sessions, police_tasks(subject=account(), signals=[signal("coercion", 0.9)]), api.clock.now
    )
    assert (await api.case(case_id))["status"] == "ready"
    for to in ["review", "ready", "acknowledged", "closed", "dismissed"]:
        response = await api.move(case_id, to, note="n")
        assert response.status_code == 409, to
        assert response.json()["detail"] == (
            "the case is ready; from ready it can move only to submitted"
        )
    no_reference = await api.move(case_id, "submitted")
    assert no_reference.status_code == 400
    assert "external_reference" in no_reference.json()["detail"]
    bad_reference = await api.move(case_id, "submitted", external_reference="<script>")
    assert bad_reference.status_code == 422
    unknown = await api.move(case_id, "archived")
    assert unknown.status_code == 422
    assert (await api.case(case_id))["status"] == "ready", "nothing refused changed the case"
    assert len((await api.case(case_id))["transitions"]) == 1


async def test_transitions_need_an_investigator_and_an_existing_case(
    api: Api, sessions: async_sessionmaker[AsyncSession]
) -> None:
    case_id = await apply(
        sessions, police_tasks(subject=account(), signals=[signal("coercion", 0.9)]), api.clock.now
    )
    body = {"to": "submitted", "external_reference": "KNT-1", "packet_version": 1}
    path = f"/v1/cases/{case_id}/transitions"
    assert (await api.client.post(path, json=body)).status_code == 401
    assert (await api.client.post(path, json=body, headers=api.viewer)).status_code == 403
    missing = await api.move(uuid4(), "submitted", external_reference="KNT-1", packet_version=1)
    assert missing.status_code == 404
    media = await api.move(
        case_id,
        "submitted",
        external_reference="KNT-1",
        packet_version=1,
        note="data:image/png;base64,iVBORw0KGgo=",
    )
    assert media.status_code == 422, "a note is text, never content"
    jpeg = bytes.fromhex("ffd8ffe000104a464946000101") + bytes(40)
    for refused in (
        {"note": "see " + jpeg.hex()},  # hex
        {"note": "x " + base64.b64encode(b"ab" + jpeg).decode()},  # base64, two bytes in
        {"note": quote(base64.b64encode(jpeg).decode(), safe="")},  # percent-encoded
        {"note": "a\x00b"},  # NUL: PostgreSQL cannot store it
        {"external_reference": "/9j/4AAQSkZJ"},  # media in a reference
    ):
        fields = {"external_reference": "KNT-1", "packet_version": 1, **refused}
        response = await api.move(case_id, "submitted", **fields)
        assert response.status_code == 422, refused
    assert (await api.case(case_id))["status"] == "ready"
    lines = await api.move(
        case_id, "submitted", external_reference="KNT-1", packet_version=1, note="line\nbreak"
    )
    assert lines.status_code == 200, "a person's note may have line breaks"


async def test_a_flag_after_submission_makes_a_supplementary_packet_naming_the_one_sent(
    api: Api, sessions: async_sessionmaker[AsyncSession]
) -> None:
    subject = account()
    first = police_tasks(subject=subject, signals=[signal("coercion", 0.9)])
    case_id = await apply(sessions, first, api.clock.now)
    api.clock.now = DETECTED_AT + timedelta(minutes=30)
    sent = await api.move(
        case_id, "submitted", external_reference="KNT-20261126-0042", packet_version=1
    )
    assert sent.is_success

    later = police_tasks(subject=subject, signals=[signal("grooming", 0.95)], minutes=60)
    await apply(sessions, later, DETECTED_AT + timedelta(minutes=61))
    case = await api.case(case_id)
    assert (case["status"], case["packet_version"], case["submitted_version"]) == ("ready", 2, 1)
    assert case["transitions"][-1]["from_status"] == "submitted"
    assert case["transitions"][-1]["actor"] == "system"
    allowed = DEFAULT_DEADLINES[later[0].priority].submitted
    assert datetime.fromisoformat(case["submitted_due_at"]) == (
        DETECTED_AT + timedelta(minutes=60) + allowed
    ), "the supplement's clock starts at the new flag's detection"

    sent = (await api.client.get(f"/v1/cases/{case_id}/packets/1", headers=api.auth)).json()
    supplement = (await api.client.get(f"/v1/cases/{case_id}/packets/2", headers=api.auth)).json()
    assert sent["supplement"] is None
    assert len(sent["timeline"]) == 1, "the packet that was sent never changes"
    assert supplement["supplement"] == {
        "supplements_version": 1,
        "external_reference": "KNT-20261126-0042",
        "submitted_at": (DETECTED_AT + timedelta(minutes=30)).isoformat().replace("+00:00", "Z"),
        "new_flag_ids": [str(later[0].flag_id)],
        "new_priority": later[0].priority.value,
    }
    assert "Supplementary to the referral sent as KNT-20261126-0042" in supplement["summary"]

    api.clock.now = DETECTED_AT + timedelta(minutes=70)
    again = await api.move(
        case_id, "submitted", external_reference="KNT-20261126-0042", packet_version=2
    )
    assert again.is_success
    assert (await api.move(case_id, "acknowledged")).is_success
    third = police_tasks(subject=subject, signals=[signal("coercion", 0.95)], minutes=90)
    await apply(sessions, third, DETECTED_AT + timedelta(minutes=91))
    case = await api.case(case_id)
    assert (case["status"], case["packet_version"], case["submitted_version"]) == ("ready", 3, 2)
    v3 = (await api.client.get(f"/v1/cases/{case_id}/packets/3", headers=api.auth)).json()
    assert v3["supplement"]["supplements_version"] == 2
    assert v3["supplement"]["new_flag_ids"] == [str(third[0].flag_id)]

    async with sessions() as session, session.begin():
        replayed = await store.apply_tasks(
            session=session,
            tasks=third,
            now=DETECTED_AT + timedelta(minutes=95),
        )
    assert replayed == []
    assert (await api.case(case_id))["packet_version"] == 3, "a replayed task changes nothing"


async def test_packets_read_as_plain_text(
    api: Api, sessions: async_sessionmaker[AsyncSession]
) -> None:
    danger = signal("coercion", 0.9, immediate_danger=True)
    case_id = await apply(
        sessions, police_tasks(subject=account(), signals=[danger]), api.clock.now
    )
    response = await api.client.get(
        f"/v1/cases/{case_id}/packets/1", params={"format": "text"}, headers=api.auth
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text.startswith("A CHILD MAY BE IN IMMEDIATE DANGER: CALL 999 NOW.")
    assert "No images or other content are attached" in response.text
    bad = await api.client.get(
        f"/v1/cases/{case_id}/packets/1", params={"format": "pdf"}, headers=api.auth
    )
    assert bad.status_code == 422


async def test_submitting_observes_the_ready_to_submitted_time(
    api: Api, sessions: async_sessionmaker[AsyncSession]
) -> None:
    case_id = await apply(
        sessions, police_tasks(subject=account(), signals=[signal("coercion", 0.9)]), api.clock.now
    )
    api.clock.now += timedelta(minutes=40)
    assert (
        await api.move(case_id, "submitted", external_reference="KNT-7", packet_version=1)
    ).is_success
    text = (await api.client.get("/metrics/")).text
    assert 'csae_stage_seconds_count{priority="P1",stage="ready_to_submitted"} 1.0' in text
    assert 'csae_stage_seconds_sum{priority="P1",stage="ready_to_submitted"} 2400.0' in text


async def sweep(sessions: async_sessionmaker[AsyncSession], at: datetime) -> Metrics:
    """One SLA sweep at `at`, into metrics of its own."""
    metrics = Metrics(CollectorRegistry())
    await SlaSweeper(sessions=sessions, metrics=metrics, clock=Clock(at)).sweep_once()
    return metrics


def _sample(metrics: Metrics, name: str, priority: str, stage: Stage) -> float:
    value = metrics.registry.get_sample_value(name, {"priority": priority, "stage": stage.value})
    return value or 0.0


async def test_the_sweep_finds_overdue_cases_and_counts_each_breach_once(
    own_sessions: async_sessionmaker[AsyncSession],
) -> None:
    clock = Clock(DETECTED_AT)
    metrics = Metrics(CollectorRegistry())
    sweeper = SlaSweeper(sessions=own_sessions, metrics=metrics, clock=clock)
    # A P1 referral applied on time; a review; a P1 referral applied 10 min late (ready ≤ 5 min).
    refer = police_tasks(subject=account(), signals=[signal("coercion", 0.9)])
    review = police_tasks(subject=account(), signals=[signal("grooming", 0.7)])
    late = police_tasks(subject=account(), signals=[signal("coercion", 0.9)])
    assert [t[0].priority.value for t in (refer, late)] == ["P1", "P1"]
    assert review[0].decision == "review"
    rp = review[0].priority.value
    on_time = await apply(own_sessions, refer, DETECTED_AT + timedelta(minutes=1))
    await apply(own_sessions, review, DETECTED_AT + timedelta(minutes=1))
    async with own_sessions() as session, session.begin():
        applied_late = await store.apply_tasks(
            session=session, tasks=late, now=DETECTED_AT + timedelta(minutes=10)
        )
    # Ready 10 minutes after detection: late, and found at that move, never again by a sweep.
    assert applied_late[0].breaches == ((Priority.P1, Stage.READY),)

    clock.now = DETECTED_AT + timedelta(minutes=11)
    first = await sweeper.sweep_once()
    last = metrics.registry.get_sample_value("csae_sla_last_sweep_timestamp_seconds")
    assert last == clock.now.timestamp()
    assert first is not None
    assert first.breaches == []
    assert sum(first.overdue.values()) == 0

    clock.now = DETECTED_AT + timedelta(hours=5)  # past the 4 h review deadline
    await sweeper.sweep_once()
    assert _sample(metrics, "csae_cases_overdue", rp, Stage.REVIEW) == 1
    assert _sample(metrics, "csae_sla_breaches_total", rp, Stage.REVIEW) == 1
    # The review queue a person works from: one waiting, opened 4 h 59 min ago.
    waiting = {"priority": rp}
    assert metrics.registry.get_sample_value("csae_review_backlog_cases", waiting) == 1
    oldest = metrics.registry.get_sample_value("csae_review_oldest_seconds", waiting)
    assert oldest == (timedelta(hours=5) - timedelta(minutes=1)).total_seconds()

    clock.now = DETECTED_AT + timedelta(hours=25)  # past the 24 h P1 submission deadline
    for _ in range(3):
        await sweeper.sweep_once()
    assert _sample(metrics, "csae_cases_overdue", "P1", Stage.SUBMITTED) == 2
    assert _sample(metrics, "csae_sla_breaches_total", "P1", Stage.SUBMITTED) == 2
    assert _sample(metrics, "csae_sla_breaches_total", rp, Stage.REVIEW) == 1, "counted once"
    assert _sample(metrics, "csae_sla_breaches_total", "P1", Stage.READY) == 0, "the move's"

    await move(
        own_sessions,
        on_time,
        CaseStatus.SUBMITTED,
        clock.now,
        external_reference="KNT-late",
        packet_version=1,
    )
    await sweeper.sweep_once()
    assert _sample(metrics, "csae_cases_overdue", "P1", Stage.SUBMITTED) == 1
    assert _sample(metrics, "csae_sla_breaches_total", "P1", Stage.SUBMITTED) == 2

    # A second worker's sweeper over the same database finds nothing new to count.
    other = Metrics(CollectorRegistry())
    await SlaSweeper(sessions=own_sessions, metrics=other, clock=clock).sweep_once()
    assert _sample(other, "csae_cases_overdue", "P1", Stage.SUBMITTED) == 1
    assert all(
        _sample(other, "csae_sla_breaches_total", p, stage) == 0
        for p in ("P0", "P1", "P2", "P3")
        for stage in Stage
    )


async def test_a_stage_done_late_is_a_breach_even_when_no_sweep_saw_it_open(
    own_sessions: async_sessionmaker[AsyncSession],
) -> None:
    review = police_tasks(subject=account(), signals=[signal("grooming", 0.7)])
    rp = review[0].priority.value
    case_id = await apply(own_sessions, review, DETECTED_AT + timedelta(minutes=1))
    moved = await move(own_sessions, case_id, CaseStatus.READY, DETECTED_AT + timedelta(hours=6))
    assert moved.breaches == ((Priority(rp), Stage.REVIEW),), "found and counted by the move"
    metrics = await sweep(own_sessions, DETECTED_AT + timedelta(hours=7))
    assert _sample(metrics, "csae_sla_breaches_total", rp, Stage.REVIEW) == 0, "not twice"
    assert _sample(metrics, "csae_cases_overdue", rp, Stage.REVIEW) == 0


async def test_overdue_cases_are_listed_most_overdue_first(
    own_api: Api, own_sessions: async_sessionmaker[AsyncSession]
) -> None:
    review = await apply(  # review due at +4 h
        own_sessions,
        police_tasks(subject=account(), signals=[signal("grooming", 0.7)]),
        DETECTED_AT,
    )
    p1 = await apply(  # submission due at +24 h
        own_sessions,
        police_tasks(subject=account(), signals=[signal("coercion", 0.9)]),
        DETECTED_AT,
    )
    await apply(  # P2 referral: submission due at +72 h, not yet late
        own_sessions,
        police_tasks(subject=account(), signals=[signal("grooming", 0.95)]),
        DETECTED_AT,
    )
    own_api.clock.now = DETECTED_AT + timedelta(hours=30)
    listed = await own_api.client.get(
        "/v1/cases", params={"overdue": "true"}, headers=own_api.viewer
    )
    assert [c["case_id"] for c in listed.json()["items"]] == [str(review), str(p1)]
    assert [c["due_stage"] for c in listed.json()["items"]] == ["review", "submitted"]

    first = await own_api.client.get(
        "/v1/cases", params={"overdue": "true", "limit": 1}, headers=own_api.viewer
    )
    second = await own_api.client.get(
        "/v1/cases",
        params={"overdue": "true", "limit": 1, "cursor": first.json()["next_cursor"]},
        headers=own_api.viewer,
    )
    assert [c["case_id"] for c in first.json()["items"]] == [str(review)]
    assert [c["case_id"] for c in second.json()["items"]] == [str(p1)]
    assert second.json()["next_cursor"] is None

    own_api.clock.now = DETECTED_AT + timedelta(hours=1)
    early = await own_api.client.get(
        "/v1/cases", params={"overdue": "true"}, headers=own_api.viewer
    )
    assert early.json()["items"] == []
    everything = await own_api.client.get("/v1/cases", headers=own_api.viewer)
    assert len(everything.json()["items"]) == 3


async def test_cases_keep_their_deadlines_in_the_database(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    case_id = await apply(
        sessions,
        police_tasks(subject=account(), signals=[signal("coercion", 0.9, immediate_danger=True)]),
        DETECTED_AT + timedelta(seconds=20),
    )
    async with sessions() as session:
        case = await session.get(Case, case_id)
    assert case is not None
    assert case.priority == "P0"
    assert case.ready_due_at == DETECTED_AT + timedelta(seconds=60)
    assert case.submitted_due_at == DETECTED_AT + timedelta(minutes=15)
    assert (case.due_at, case.due_stage) == (case.submitted_due_at, "submitted")


async def test_a_more_urgent_flag_brings_the_waiting_deadline_forward(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    subject = account()
    case_id = await apply(
        sessions, police_tasks(subject=subject, signals=[signal("grooming", 0.95)]), DETECTED_AT
    )
    danger = police_tasks(
        subject=subject,
        signals=[signal("coercion", 0.9, immediate_danger=True)],
        minutes=30,
    )
    await apply(sessions, danger, DETECTED_AT + timedelta(minutes=30, seconds=5))
    async with sessions() as session:
        case = await session.get(Case, case_id)
    assert case is not None
    assert (case.priority, case.status, case.due_stage) == ("P0", CaseStatus.READY, "submitted")
    assert case.due_at == case.submitted_due_at == DETECTED_AT + timedelta(minutes=30 + 15)


async def test_every_illegal_move_from_every_state_answers_409_and_changes_nothing(
    api: Api, sessions: async_sessionmaker[AsyncSession]
) -> None:
    path = [
        ("ready", {}),
        ("submitted", {"external_reference": "KNT-9", "packet_version": 1}),
        ("acknowledged", {}),
        ("closed", {}),
    ]
    case_id = await apply(
        sessions, police_tasks(subject=account(), signals=[signal("grooming", 0.7)]), api.clock.now
    )
    for step in range(len(path) + 1):
        case = await api.case(case_id)
        current = case["status"]
        allowed = case["allowed_transitions"]
        for illegal in CaseStatus:
            if illegal.value in allowed:
                continue
            refused = await api.move(case_id, illegal.value, note="n")
            assert refused.status_code == 409, (current, illegal)
            assert (refused.json()["status"], refused.json()["allowed"]) == (current, allowed)
        assert (await api.case(case_id))["updated_at"] == case["updated_at"]
        if step < len(path):
            to, fields = path[step]
            assert (await api.move(case_id, to, **fields)).is_success


async def test_a_move_on_a_case_that_changed_since_it_was_read_is_refused(
    api: Api, sessions: async_sessionmaker[AsyncSession]
) -> None:
    subject = account()
    case_id = await apply(
        sessions, police_tasks(subject=subject, signals=[signal("grooming", 0.7)]), api.clock.now
    )
    read = await api.case(case_id)
    # While the reviewer reads, another flag for review joins the case.
    await apply(
        sessions,
        police_tasks(subject=subject, signals=[signal("grooming", 0.65)]),
        api.clock.now + timedelta(seconds=30),
    )
    stale = await api.move(
        case_id, "dismissed", note="nothing here", expected_updated_at=read["updated_at"]
    )
    assert stale.status_code == 409
    assert "read it again" in stale.json()["detail"]
    fresh = await api.case(case_id)
    assert len(fresh["flag_ids"]) == 2
    dismissed = await api.move(
        case_id, "dismissed", note="both flags reviewed", expected_updated_at=fresh["updated_at"]
    )
    assert dismissed.json()["status"] == "dismissed"


async def test_sending_an_older_version_brings_the_later_flags_back_as_a_supplement(
    api: Api, sessions: async_sessionmaker[AsyncSession]
) -> None:
    subject = account()
    first = police_tasks(subject=subject, signals=[signal("coercion", 0.9)])
    case_id = await apply(sessions, first, api.clock.now)
    # The lead phones version 1 through while a second flag builds version 2.
    second = police_tasks(subject=subject, signals=[signal("grooming", 0.95)], minutes=3)
    await apply(sessions, second, DETECTED_AT + timedelta(minutes=4))
    api.clock.now = DETECTED_AT + timedelta(minutes=20)
    too_new = await api.move(case_id, "submitted", external_reference="KNT-55", packet_version=3)
    assert too_new.status_code == 400
    assert "1..2" in too_new.json()["detail"]

    moved = await api.move(case_id, "submitted", external_reference="KNT-55", packet_version=1)
    case = moved.json()
    assert (case["status"], case["submitted_version"], case["packet_version"]) == ("ready", 1, 3)
    assert [
        (t["from_status"], t["to_status"], t["actor"] == "system") for t in case["transitions"][-2:]
    ] == [
        ("ready", "submitted", False),
        ("submitted", "ready", True),
    ]
    v3 = (await api.client.get(f"/v1/cases/{case_id}/packets/3", headers=api.auth)).json()
    assert v3["supplement"]["supplements_version"] == 1
    assert v3["supplement"]["new_flag_ids"] == [str(second[0].flag_id)]
    allowed = DEFAULT_DEADLINES[second[0].priority].submitted
    assert (
        datetime.fromisoformat(case["submitted_due_at"])
        == DETECTED_AT + timedelta(minutes=3) + allowed
    )


async def test_a_supplement_never_erases_a_breach_no_sweep_has_counted(
    own_sessions: async_sessionmaker[AsyncSession],
) -> None:
    subject = account()
    # Applied 10 minutes after detection (P1 ready ≤ 5 min), sent 30 h later (≤ 24 h).
    async with own_sessions() as session, session.begin():
        (opened,) = await store.apply_tasks(
            session=session,
            tasks=police_tasks(subject=subject, signals=[signal("coercion", 0.9)]),
            now=DETECTED_AT + timedelta(minutes=10),
        )
    case_id = opened.case_id
    assert opened.breaches == ((Priority.P1, Stage.READY),)
    sent = await move(
        own_sessions,
        case_id,
        CaseStatus.SUBMITTED,
        DETECTED_AT + timedelta(hours=30),
        external_reference="KNT-late",
        packet_version=1,
    )
    later = police_tasks(
        subject=subject,
        signals=[signal("coercion", 0.95)],
        minutes=31 * 60,
    )
    async with own_sessions() as session, session.begin():
        applied = await store.apply_tasks(
            session=session,
            tasks=later,
            now=DETECTED_AT + timedelta(hours=31, minutes=1),
        )
    assert sent.breaches == ((Priority.P1, Stage.SUBMITTED),)
    assert applied[0].breaches == (), "each counted once, at the move that was late"
    metrics = await sweep(own_sessions, DETECTED_AT + timedelta(hours=31, minutes=2))
    for stage in Stage:
        assert _sample(metrics, "csae_sla_breaches_total", "P1", stage) == 0, stage


async def test_a_flag_for_review_on_a_sent_case_is_due_within_the_review_deadline(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    subject = account()
    case_id = await apply(
        sessions, police_tasks(subject=subject, signals=[signal("coercion", 0.9)]), DETECTED_AT
    )
    await move(
        sessions,
        case_id,
        CaseStatus.SUBMITTED,
        DETECTED_AT + timedelta(minutes=20),
        external_reference="KNT-3",
        packet_version=1,
    )
    unconfirmed = police_tasks(subject=subject, signals=[signal("grooming", 0.7)], minutes=60)
    assert unconfirmed[0].decision == "review"
    await apply(sessions, unconfirmed, DETECTED_AT + timedelta(minutes=61))
    async with sessions() as session:
        case = await session.get(Case, case_id)
    assert case is not None
    assert case.status is CaseStatus.READY
    review = DEFAULT_DEADLINES[unconfirmed[0].priority].review
    assert case.submitted_due_at == DETECTED_AT + timedelta(minutes=60) + review


async def test_a_supplements_clock_and_its_metrics_follow_the_new_flags_priority(
    own_sessions: async_sessionmaker[AsyncSession],
) -> None:
    subject = account()
    danger = police_tasks(subject=subject, signals=[signal("coercion", 0.9, immediate_danger=True)])
    case_id = await apply(own_sessions, danger, DETECTED_AT + timedelta(seconds=10))
    await move(
        own_sessions,
        case_id,
        CaseStatus.SUBMITTED,
        DETECTED_AT + timedelta(minutes=5),
        external_reference="KNT-999",
        packet_version=1,
    )
    later = police_tasks(subject=subject, signals=[signal("grooming", 0.95)], minutes=60)
    calmer = later[0].priority
    assert calmer is not Priority.P0
    await apply(own_sessions, later, DETECTED_AT + timedelta(minutes=61))
    allowed = DEFAULT_DEADLINES[calmer].submitted
    metrics = await sweep(
        own_sessions, DETECTED_AT + timedelta(minutes=60) + allowed + timedelta(minutes=1)
    )
    async with own_sessions() as session:
        case = await session.get(Case, case_id)
    assert case is not None
    assert (case.priority, case.submitted_due_priority) == ("P0", calmer.value)
    assert _sample(metrics, "csae_cases_overdue", calmer.value, Stage.SUBMITTED) == 1
    assert _sample(metrics, "csae_sla_breaches_total", calmer.value, Stage.SUBMITTED) == 1
    assert _sample(metrics, "csae_cases_overdue", "P0", Stage.SUBMITTED) == 0, "no false P0 page"


async def test_sending_an_older_version_is_no_ready_breach_for_flags_built_in_time(
    own_api: Api, own_sessions: async_sessionmaker[AsyncSession]
) -> None:
    subject = account()
    case_id = await apply(
        own_sessions,
        police_tasks(subject=subject, signals=[signal("coercion", 0.9)]),
        DETECTED_AT + timedelta(minutes=1),
    )
    second = police_tasks(subject=subject, signals=[signal("coercion", 0.95)], minutes=2)
    await apply(own_sessions, second, DETECTED_AT + timedelta(minutes=2, seconds=5))
    own_api.clock.now = DETECTED_AT + timedelta(minutes=30)
    moved = await own_api.move(case_id, "submitted", external_reference="KNT-1", packet_version=1)
    assert moved.json()["status"] == "ready"
    metrics = await sweep(own_sessions, DETECTED_AT + timedelta(minutes=31))
    for stage in Stage:
        assert _sample(metrics, "csae_sla_breaches_total", "P1", stage) == 0, stage


async def test_a_breach_is_labelled_with_the_priority_of_the_deadline_it_missed(
    own_sessions: async_sessionmaker[AsyncSession],
) -> None:
    subject = account()
    report = make_flag(
        subject=subject,
        source={"system": "test-reports", "version": "1", "kind": "user_report"},
        signals=[signal("coercion", 0.5)],
    )
    reported = [t for t in routed(report).tasks if t.destination.kind.value == "police"]
    assert [(t.decision, t.priority) for t in reported] == [("review", Priority.P1)]
    case_id = await apply(own_sessions, reported, DETECTED_AT + timedelta(minutes=1))
    referral = police_tasks(subject=subject, signals=[signal("grooming", 0.95)])
    assert referral[0].priority is Priority.P2
    async with own_sessions() as session, session.begin():
        joined = await store.apply_tasks(  # P2 ready ≤ 15 min
            session=session, tasks=referral, now=DETECTED_AT + timedelta(minutes=20)
        )
    assert joined[0].breaches == ((Priority.P2, Stage.READY),)
    async with own_sessions() as session:
        case = await session.get(Case, case_id)
    assert case is not None
    assert (case.priority, case.status) == ("P1", CaseStatus.READY)


async def test_one_sweeper_at_a_time_and_the_one_that_waits_keeps_no_stale_count(
    own_sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Several workers sweep the same database: while one holds the sweep, another skips its
    round and clears its overdue gauge, so `max()` over workers reads the sweeper's count."""
    await apply(
        own_sessions,
        police_tasks(subject=account(), signals=[signal("coercion", 0.9)]),
        DETECTED_AT,
    )
    late = DETECTED_AT + timedelta(hours=25)  # past the 24 h P1 submission deadline
    metrics = Metrics(CollectorRegistry())
    waiting = SlaSweeper(sessions=own_sessions, metrics=metrics, clock=Clock(late))
    assert await waiting.sweep_once() is not None
    assert _sample(metrics, "csae_cases_overdue", "P1", Stage.SUBMITTED) == 1
    async with own_sessions() as other, other.begin():  # another worker's sweep, in progress
        await other.execute(select(func.pg_advisory_xact_lock(SWEEP_LOCK)))
        assert await waiting.sweep_once() is None, "the round is skipped"
        assert _sample(metrics, "csae_cases_overdue", "P1", Stage.SUBMITTED) == 0
    assert await waiting.sweep_once() is not None, "the lock is released with the transaction"
    assert _sample(metrics, "csae_cases_overdue", "P1", Stage.SUBMITTED) == 1


async def test_supplements_are_counted_once_by_destination_where_they_are_made(
    api: Api, sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    settings = isolated_settings(database_url)
    metrics = Metrics(CollectorRegistry())
    # No refusal in these records, so the worker sends no dead letter: it needs no producer.
    worker = TaskRecorder(
        cast(AIOKafkaProducer, None), sessions=sessions, settings=settings, metrics=metrics
    )

    def delivered(tasks: list[ReferralTask]) -> list[Any]:
        return [
            ConsumerRecord(
                settings.topic_referrals,
                0,
                0,
                0,
                0,
                None,
                t.model_dump_json().encode(),
                None,
                0,
                0,
                (),
            )
            for t in tasks
        ]

    def counted() -> float:
        value = metrics.registry.get_sample_value(
            "csae_supplements_total", {"destination": "police"}
        )
        return value or 0.0

    subject = account()
    first = police_tasks(subject=subject, signals=[signal("coercion", 0.9)])
    await worker(delivered(first))
    async with sessions() as session:
        case_id = await session.scalar(select(Task.case_id).where(Task.flag_id == first[0].flag_id))
    assert case_id is not None
    assert counted() == 0, "a new case is no supplement"
    api.clock.now = DETECTED_AT + timedelta(minutes=30)
    assert (
        await api.move(case_id, "submitted", external_reference="K-1", packet_version=1)
    ).is_success

    later = police_tasks(subject=subject, signals=[signal("grooming", 0.95)], minutes=60)
    await worker(delivered(later))
    assert counted() == 1
    await worker(delivered(later))  # redelivered: stored already, counted already
    more = police_tasks(subject=subject, signals=[signal("coercion", 0.95)], minutes=62)
    await worker(delivered(more))  # joins the supplement waiting to be sent: not another one
    assert counted() == 1
    assert (await api.case(case_id))["packet_version"] == 3

    # A person sends version 2 while version 3 holds a later flag: the API makes a supplement.
    api.clock.now = DETECTED_AT + timedelta(minutes=70)
    moved = await api.move(case_id, "submitted", external_reference="K-2", packet_version=2)
    assert moved.json()["status"] == "ready"
    scraped = (await api.client.get("/metrics/")).text
    assert 'csae_supplements_total{destination="police"} 1.0' in scraped
