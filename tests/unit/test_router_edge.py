"""The router's edge maps every outcome of one record to an output, and never raises."""

import json
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from prometheus_client import CollectorRegistry

from schemas.referral import RejectionReason
from services.pipeline.decode import Refusal
from services.pipeline.metrics import Metrics
from services.pipeline.settings import Settings
from services.router import service
from services.router.forces import uk_forces
from services.router.policy import default_policy
from services.router.routing import Routing
from tests.factories import DETECTED_AT, flag_document


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
