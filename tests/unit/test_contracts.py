"""The contracts: checked-in schemas and examples agree with the models; models are closed."""

import ipaddress
import json
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4, uuid5

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from schemas.base import Contract
from schemas.export import CONTRACTS, stale
from schemas.flag import ModerationFlag
from schemas.referral import (
    TASK_NAMESPACE,
    Criterion,
    Decision,
    Destination,
    DestinationKind,
    FiredRule,
    Outcome,
    Priority,
    ReferralTask,
    RejectionReason,
    task_id_for,
)
from services.domain.forces import uk_forces
from services.domain.policy import default_policy
from services.pipeline.decode import Refusal, decode
from services.router.routing import route
from tests.factories import DETECTED_AT, flag_document, make_flag

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
EXAMPLES = SCHEMAS / "examples"
MAX_BYTES = 256 * 1024
POLICE = Destination(kind=DestinationKind.POLICE, force_id="kent")


def test_checked_in_json_schemas_are_not_stale() -> None:
    assert stale(SCHEMAS / "json") == []


def test_every_contract_has_a_checked_in_schema() -> None:
    assert sorted(path.name for path in (SCHEMAS / "json").glob("*.json")) == sorted(CONTRACTS)


@pytest.mark.parametrize(
    "path", sorted((EXAMPLES / "valid").glob("*.json")), ids=lambda path: path.name
)
def test_valid_example_validates_and_decodes(path: Path) -> None:
    ModerationFlag.model_validate_json(path.read_text())
    assert isinstance(
        decode(path.read_bytes(), ModerationFlag, max_bytes=MAX_BYTES), ModerationFlag
    )


INVALID_EXAMPLES = {
    "embedded-media.json": RejectionReason.EMBEDDED_MEDIA,
    "unknown-schema-version.json": RejectionReason.UNKNOWN_SCHEMA_VERSION,
    "extra-field.json": RejectionReason.INVALID,
    "missing-subject.json": RejectionReason.INVALID,
    "not-json.txt": RejectionReason.INVALID_JSON,
}


def test_every_invalid_example_has_an_expected_reason() -> None:
    assert sorted(path.name for path in (EXAMPLES / "invalid").iterdir()) == sorted(
        INVALID_EXAMPLES
    )


@pytest.mark.parametrize(("name", "reason"), sorted(INVALID_EXAMPLES.items()))
def test_invalid_example_is_refused_for_its_reason(name: str, reason: RejectionReason) -> None:
    result = decode((EXAMPLES / "invalid" / name).read_bytes(), ModerationFlag, max_bytes=MAX_BYTES)
    assert isinstance(result, Refusal)
    assert result.reason is reason


def test_sample_flags_decode_or_are_refused_and_cover_every_criterion() -> None:
    lines = (EXAMPLES / "sample-flags.jsonl").read_bytes().splitlines()
    decoded = [decode(line, ModerationFlag, max_bytes=MAX_BYTES) for line in lines]
    flags = [result for result in decoded if isinstance(result, ModerationFlag)]
    refused = [result for result in decoded if isinstance(result, Refusal)]
    assert len(flags) + len(refused) == len(lines)
    assert refused
    criteria = {
        criterion
        for flag in flags
        for criterion in route(
            flag,
            policy=default_policy(),
            directory=uk_forces(),
            home_force_id="metropolitan",
            now=DETECTED_AT,
        ).decision.criteria
    }
    assert criteria == set(Criterion)


def test_models_are_frozen() -> None:
    flag = make_flag()
    with pytest.raises(ValidationError):
        flag.subject = flag.subject  # type: ignore[misc]
    with pytest.raises(ValidationError):
        flag.signals[0].confidence = 0.1  # type: ignore[misc]


def _contract_models(base: type[BaseModel] = Contract) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    for model in base.__subclasses__():
        found += [model, *_contract_models(model)]
    return found


CONTRACT_MODELS = _contract_models()


def test_every_exported_contract_is_a_contract_model() -> None:
    assert set(CONTRACTS.values()) <= set(CONTRACT_MODELS)


@pytest.mark.parametrize("model", CONTRACT_MODELS, ids=[m.__name__ for m in CONTRACT_MODELS])
def test_contract_models_are_frozen_and_forbid_extra_fields(model: type[BaseModel]) -> None:
    assert model.model_config.get("frozen") is True
    assert model.model_config.get("extra") == "forbid"


@pytest.mark.parametrize(
    "document",
    [
        flag_document(note="x"),
        flag_document(subject={"account_id": "a", "email": "x"}),
        flag_document(signals=[{"category": "grooming", "label": "l", "confidence": 1, "x": 1}]),
    ],
    ids=["top-level", "subject", "signal"],
)
def test_flag_refuses_extra_fields_at_any_level(document: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        ModerationFlag.model_validate(document)


def _rule() -> FiredRule:
    return FiredRule(
        rule_id="test-rule",
        mode="active",
        outcome="refer",
        priority=Priority.P2,
        criteria=[Criterion.GROOMING],
        matched=["signals[0].category=grooming"],
    )


def _task(**overrides: Any) -> dict[str, Any]:
    flag = make_flag()
    task: dict[str, Any] = {
        "task_id": task_id_for(flag.flag_id, POLICE),
        "case_key": "org-test|acct|police:kent",
        "flag_id": flag.flag_id,
        "destination": POLICE,
        "criteria": [Criterion.GROOMING],
        "priority": Priority.P2,
        "decision": "refer",
        "rules": [_rule()],
        "policy_version": "test.1",
        "detected_at": DETECTED_AT,
        "routed_at": DETECTED_AT,
        "due_at": DETECTED_AT + timedelta(minutes=15),
        "flag": flag,
    }
    task.update(overrides)
    return task


def test_referral_task_with_deterministic_id_is_accepted() -> None:
    task = ReferralTask.model_validate(_task())
    assert task.task_id == uuid5(TASK_NAMESPACE, f"{task.flag_id}:police:kent")


@pytest.mark.parametrize(
    "task_id",
    [
        uuid4(),
        UUID(int=0),
        task_id_for(UUID(int=1), POLICE),
        task_id_for(UUID(int=1), Destination(kind=DestinationKind.IWF)),
    ],
    ids=["random", "zero", "other-flag", "other-destination"],
)
def test_referral_task_refuses_a_task_id_not_derived_from_flag_and_destination(
    task_id: UUID,
) -> None:
    with pytest.raises(ValidationError, match="task_id is not the uuid5"):
        ReferralTask.model_validate(_task(task_id=task_id))


def test_referral_task_refuses_a_task_id_for_another_destination_of_the_same_flag() -> None:
    document = _task()
    iwf_id = task_id_for(document["flag_id"], Destination(kind=DestinationKind.IWF))
    with pytest.raises(ValidationError, match="task_id is not the uuid5"):
        ReferralTask.model_validate({**document, "task_id": iwf_id})


def test_referral_task_refuses_a_flag_id_that_differs_from_the_embedded_flag() -> None:
    other = uuid4()
    with pytest.raises(ValidationError, match="flag_id differs"):
        ReferralTask.model_validate(_task(flag_id=other, task_id=task_id_for(other, POLICE)))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "police"}, "needs a force_id"),
        ({"kind": "intl"}, "needs a mechanism and a country"),
        ({"kind": "intl", "mechanism": "ncmec_cybertipline"}, "needs a mechanism and a country"),
        ({"kind": "intl", "country": "US"}, "needs a mechanism and a country"),
    ],
)
def test_destination_must_be_addressed(fields: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Destination.model_validate(fields)


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ({"kind": "police", "force_id": "kent"}, "police:kent"),
        ({"kind": "iwf"}, "iwf"),
        ({"kind": "nca"}, "nca"),
        (
            {"kind": "intl", "mechanism": "ncmec_cybertipline", "country": "US"},
            "intl:US:ncmec_cybertipline",
        ),
    ],
)
def test_addressed_destination_is_accepted(fields: dict[str, str], key: str) -> None:
    assert Destination.model_validate(fields).key == key


def _decision(**overrides: Any) -> dict[str, Any]:
    decision: dict[str, Any] = {
        "flag_id": uuid4(),
        "outcome": Outcome.REFER,
        "priority": Priority.P2,
        "criteria": [Criterion.GROOMING],
        "rules": [_rule()],
        "policy_version": "test.1",
        "destinations": [POLICE],
        "detected_at": DETECTED_AT,
        "decided_at": DETECTED_AT,
    }
    decision.update(overrides)
    return decision


def test_consistent_decisions_are_accepted() -> None:
    Decision.model_validate(_decision())
    Decision.model_validate(_decision(outcome=Outcome.NONE, priority=None, destinations=[]))


@pytest.mark.parametrize(
    "overrides",
    [
        {"outcome": Outcome.NONE, "priority": None},
        {"outcome": Outcome.NONE, "destinations": []},
        {"outcome": Outcome.REFER, "criteria": []},
        {"outcome": Outcome.REVIEW, "criteria": []},
        {"outcome": Outcome.REFER, "priority": None},
        {"outcome": Outcome.REFER, "destinations": []},
    ],
    ids=[
        "none-with-destinations",
        "none-with-priority",
        "refer-without-criteria",
        "review-without-criteria",
        "refer-without-priority",
        "refer-without-destinations",
    ],
)
def test_inconsistent_decisions_are_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Decision.model_validate(_decision(**overrides))


def _with(document: dict[str, Any], path: tuple[str | int, ...], value: str) -> dict[str, Any]:
    node: Any = document
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return document


@pytest.mark.parametrize("control", ["\x00", "\x01", "\x1b", "\x7f", "\x85", "\x9f"])
@pytest.mark.parametrize(
    "path",
    [
        ("subject", "username"),
        ("subject", "account_id"),
        ("content", 0, "url"),
        ("content", 0, "content_id"),
        ("platform", "org_id"),
    ],
)
def test_a_control_character_in_any_string_field_is_refused_with_its_path(
    path: tuple[str | int, ...], control: str
) -> None:
    """PostgreSQL cannot store U+0000 and no control character belongs in a packet: the router
    refuses such a flag with a reason, instead of the worker failing to store it."""
    document = flag_document(
        subject={"account_id": "acct-1", "username": "someone"},
        content=[
            {
                "content_id": "c-1",
                "media_type": "text",
                "url": "https://example.org/p/1",
                "hashes": {},
            }
        ],
    )
    clean = str(_with(document, path, "x"))  # the field exists and takes a clean value
    assert clean
    bad = _with(document, path, f"https://example.org/a{control}b")
    result = decode(json.dumps(bad).encode(), ModerationFlag, max_bytes=256 * 1024)
    assert isinstance(result, Refusal)
    assert result.reason is RejectionReason.INVALID
    assert [list(path)] == [p.loc for p in result.errors]
    assert all(control not in p.msg for p in result.errors), "the refusal quotes no input"


def test_a_task_case_key_with_a_control_character_is_refused() -> None:
    (task,) = route(
        make_flag(),
        policy=default_policy(),
        directory=uk_forces(),
        home_force_id="kent",
        now=DETECTED_AT,
    ).tasks[:1]
    document = json.loads(task.model_dump_json())
    document["case_key"] = "police:kent:acct\x00"
    with pytest.raises(ValidationError, match="case_key"):
        ReferralTask.model_validate(document)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("content", 0, "hashes", "photodna"), "/9j/4AAQSkZJRgABAQ" * 4),
        (("source", "version"), "1.iVBORw0KGgoAAAANSUhEUg"),
    ],
)
def test_base64_media_in_a_hash_or_version_field_is_refused(
    path: tuple[str | int, ...], value: str
) -> None:
    """Fields whose pattern admits base64 are searched too: the decoder scans the whole text."""
    document = flag_document(
        content=[{"content_id": "c-1", "media_type": "image", "hashes": {"photodna": "QUJD"}}]
    )
    bad = _with(document, path, value)
    result = decode(json.dumps(bad).encode(), ModerationFlag, max_bytes=256 * 1024)
    assert isinstance(result, Refusal)
    assert result.reason is RejectionReason.EMBEDDED_MEDIA
    assert [p.loc for p in result.errors] == [list(path)]


def test_a_flag_carrying_more_free_text_than_the_cap_is_refused() -> None:
    items = [
        {
            "content_id": f"c-{i}",
            "media_type": "text",
            "url": f"https://example.org/{'a' * 300}/{i}",
        }
        for i in range(60)
    ]
    result = decode(
        json.dumps(flag_document(content=items)).encode(), ModerationFlag, max_bytes=256 * 1024
    )
    assert isinstance(result, Refusal)
    assert result.reason is RejectionReason.INVALID
    assert "free-form text" in result.errors[0].msg
    fewer = flag_document(content=items[:40])
    assert isinstance(
        decode(json.dumps(fewer).encode(), ModerationFlag, max_bytes=1 << 18), ModerationFlag
    )


@given(st.uuids(), st.sampled_from([POLICE, Destination(kind=DestinationKind.IWF)]))
def test_task_ids_stay_the_uuid5_they_always_were(flag_id: UUID, destination: Destination) -> None:
    """Task ids are stored: a redelivered task must get the id its first delivery got, whatever
    way the id is computed now."""
    expected = uuid5(TASK_NAMESPACE, f"{flag_id}:{destination.key}")
    assert task_id_for(flag_id, destination) == task_id_for(str(flag_id), destination) == expected


@pytest.mark.parametrize("sent", ["1.2.3", "01.2.3.4", "2001:db8::g", 5, "marker-ip-999"])
def test_an_address_that_is_not_one_is_refused_without_quoting_it(sent: object) -> None:
    document = flag_document(subject={"account_id": "acct-ip", "ips": [sent]})
    refusal = decode(json.dumps(document).encode(), ModerationFlag, max_bytes=64 * 1024)
    assert isinstance(refusal, Refusal)
    (problem,) = refusal.errors
    assert (problem.loc, problem.type, problem.msg) == (
        ["subject", "ips", 0],
        "ip_address",
        "not an IPv4 or IPv6 address",
    )


def test_addresses_of_both_families_are_kept_and_written_as_text() -> None:
    flag = make_flag(subject={"account_id": "acct-ip", "ips": ["192.0.2.1", "2001:DB8::1"]})
    assert json.loads(flag.model_dump_json())["subject"]["ips"] == ["192.0.2.1", "2001:db8::1"]


_ADDRESS_LIKE = st.one_of(
    st.ip_addresses().map(str),
    st.ip_addresses(v=4).map(lambda a: str(a).replace(".", ".0", 1)),  # a leading zero
    st.ip_addresses(v=4).map(lambda a: f" {a}"),
    st.text(alphabet="0123456789.:abcdefx% \x00", max_size=24),
)


@given(_ADDRESS_LIKE)
def test_an_address_is_read_as_the_standard_library_reads_it(text: str) -> None:
    """The fast IPv4 path gives exactly what `ipaddress.ip_address` gives, refusals included."""
    try:
        expected: object = ipaddress.ip_address(text)
    except ValueError:
        expected = "refused"
    document = flag_document(subject={"account_id": "acct-ip", "ips": [text]})
    result = decode(json.dumps(document).encode(), ModerationFlag, max_bytes=64 * 1024)
    got = result.subject.ips[0] if isinstance(result, ModerationFlag) else "refused"
    assert got == expected
    assert type(got) is type(expected)
