"""The router's edge maps every outcome of one record to an output, and never raises."""

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka import ConsumerRecord
from prometheus_client import CollectorRegistry

from schemas.referral import RejectionReason
from services.domain.forces import uk_forces
from services.domain.policy import default_policy
from services.pipeline.decode import Refusal
from services.pipeline.metrics import Metrics
from services.pipeline.settings import Settings
from services.pipeline.startup import startup_checks
from services.router import service
from services.router.routing import Routing
from tests.factories import DETECTED_AT, flag_document, signal
from tests.policies import default_policy_data, policy_with


def record(value: bytes) -> Any:
    return ConsumerRecord(
        topic="csae.flags.v1",
        partition=0,
        offset=7,
        timestamp=0,
        timestamp_type=0,
        key=None,
        value=value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=len(value),
        headers=(),
    )


def router() -> service.FlagRouter:
    return service.FlagRouter(
        None,
        settings=Settings(),
        metrics=Metrics(CollectorRegistry()),
        policy=default_policy(),
        directory=uk_forces(),
    )


def test_a_valid_flag_is_routed() -> None:
    result = router()._route(record(json.dumps(flag_document()).encode()), DETECTED_AT)
    assert isinstance(result, Routing)


def test_a_valid_flag_that_routing_fails_on_is_refused_as_unprocessable_not_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    document = flag_document()
    secret = document["subject"]["account_id"]

    def broken(*args: object, **kwargs: object) -> Routing:
        raise OverflowError(f"date value out of range for {secret}")

    monkeypatch.setattr(service, "route", broken)
    result = router()._route(record(json.dumps(document).encode()), DETECTED_AT)

    assert isinstance(result, Refusal)
    assert result.reason is RejectionReason.UNPROCESSABLE
    assert str(result.flag_id) == document["flag_id"]
    assert secret not in repr(result)
    (logged,) = caplog.records
    assert (logged.getMessage(), logged.__dict__["error"]) == (
        "flag could not be routed",
        "OverflowError",
    )
    assert logged.exc_info is None
    assert secret not in repr(logged.__dict__)


def test_the_router_refuses_to_start_with_an_invalid_policy_naming_rule_and_field(
    tmp_path: Path,
) -> None:
    data = default_policy_data()
    data["rules"][1]["then"]["priority"] = "P5"
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SystemExit) as refused:
        startup_checks(Settings(policy_file=path))
    message = str(refused.value)
    assert message.startswith("CSAE_POLICY_FILE: the reporting policy is refused:")
    assert f"{path}: rule 'iioc-hash-exact': then.priority: Input should be" in message


def test_the_router_starts_with_the_policy_file_it_is_given(tmp_path: Path) -> None:
    data = default_policy_data()
    data["version"] = "site.3"
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data))
    policy, _ = startup_checks(Settings(policy_file=path))
    assert policy.version == "site.3"
    assert startup_checks(Settings())[0] == default_policy()


async def test_shadow_rules_are_counted_and_recorded_but_never_emit_a_task(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shadow = {
        "id": "shadow-trial",
        "mode": "shadow",
        "when": {"category": ["grooming"], "min_confidence": 0.3},
        "then": {"outcome": "refer", "priority": "P1"},
    }
    sent: list[tuple[str, bytes | None, bytes]] = []

    async def produce(producer: object, messages: list[tuple[str, bytes | None, bytes]]) -> None:
        sent.extend(messages)

    monkeypatch.setattr(service, "produce_all", produce)
    settings = Settings()
    metrics = Metrics(CollectorRegistry())
    handler = service.FlagRouter(
        None,
        settings=settings,
        metrics=metrics,
        policy=policy_with(shadow),
        directory=uk_forces(),
    )
    document = flag_document(signals=[signal("grooming", 0.4)])
    await handler([record(json.dumps(document).encode())])

    assert [topic for topic, _, _ in sent] == [settings.topic_decisions]
    decision = json.loads(sent[0][2])
    assert decision["outcome"] == "none"
    assert [(r["rule_id"], r["mode"]) for r in decision["rules"]] == [("shadow-trial", "shadow")]
    count = metrics.registry.get_sample_value
    labels = {"outcome": "refer", "criterion": "grooming", "mode": "shadow"}
    assert count("csae_router_decisions_total", labels) == 1.0
    assert count("csae_router_decisions_total", {**labels, "mode": "active"}) is None
    assert count("csae_router_flags_total", {"outcome": "none"}) == 1.0


def test_an_unknown_force_id_is_logged_without_personal_data(
    caplog: pytest.LogCaptureFixture,
) -> None:
    document = flag_document(
        child={"location": {"country": "GB", "force_id": "not-a-force", "postcode_district": "M1"}}
    )
    with caplog.at_level("WARNING"):
        result = router()._route(record(json.dumps(document).encode()), DETECTED_AT)
    assert isinstance(result, Routing)
    assert result.decision.destinations[0].force_id == "greater-manchester"
    (warning,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert warning.force_id == "not-a-force"  # type: ignore[attr-defined]
    assert str(warning.flag_id) == document["flag_id"]  # type: ignore[attr-defined]
    assert document["subject"]["account_id"] not in caplog.text


async def test_the_shadow_count_is_once_per_flag_and_criterion_as_if_shadow_rules_were_active(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shadows = [
        {
            "id": f"shadow-trial-{n}",
            "mode": "shadow",
            "when": {"category": ["grooming"], "min_confidence": 0.3},
            "then": {"outcome": outcome, "priority": "P1"},
        }
        for n, outcome in enumerate(["refer", "review", "review"])
    ]

    async def produce(producer: object, messages: list[tuple[str, bytes | None, bytes]]) -> None:
        return None

    monkeypatch.setattr(service, "produce_all", produce)
    metrics = Metrics(CollectorRegistry())
    handler = service.FlagRouter(
        None,
        settings=Settings(),
        metrics=metrics,
        policy=policy_with(*shadows),
        directory=uk_forces(),
    )
    document = flag_document(signals=[signal("grooming", 0.7), signal("grooming", 0.8)])
    await handler([record(json.dumps(document).encode())])

    count = metrics.registry.get_sample_value
    shadow = {"criterion": "grooming", "mode": "shadow"}
    assert count("csae_router_decisions_total", {**shadow, "outcome": "refer"}) == 1.0
    assert count("csae_router_decisions_total", {**shadow, "outcome": "review"}) is None
    active = {"criterion": "grooming", "mode": "active", "outcome": "review"}
    assert count("csae_router_decisions_total", active) == 1.0  # grooming-medium
