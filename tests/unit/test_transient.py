"""Which errors block and retry (the broker or database is unwell) and which are a message's own
(isolated, then parked): a transient fault must never dead-letter a referral, and a bad row must
never block the referrals behind it."""

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    TopicAuthorizationFailedError,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from services.pipeline.kafka import broker_unavailable
from services.referral.database import transient_database_error
from services.referral.exceptions import ConcurrentChange


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (KafkaConnectionError(), True),
        (KafkaTimeoutError(), True),
        (NotLeaderForPartitionError(), True),
        (ConnectionRefusedError(), True),
        (TimeoutError(), True),
        (TopicAuthorizationFailedError(), True),
        (MessageSizeTooLargeError(), False),
        (ValueError("a bug of ours about one message"), False),
    ],
)
def test_the_broker_being_unavailable_is_transient_and_a_message_too_large_is_not(
    error: BaseException, transient: bool
) -> None:
    assert broker_unavailable(error) is transient


class _DriverError(Exception):
    def __init__(self, sqlstate: str | None) -> None:
        super().__init__("driver error")
        self.sqlstate = sqlstate


def _database_error(sqlstate: str | None, *, invalidated: bool = False) -> DBAPIError:
    return DBAPIError(
        "INSERT ...", None, _DriverError(sqlstate), connection_invalidated=invalidated
    )


@pytest.mark.parametrize(
    ("sqlstate", "transient"),
    [
        ("22021", False),  # invalid byte sequence (a NUL in text)
        ("22P05", False),  # untranslatable character (a NUL in JSONB)
        ("22003", False),  # numeric value out of range
        ("23514", False),  # check constraint
        ("23505", False),  # unique violation
        ("57P01", True),  # admin shutdown
        ("57P03", True),  # cannot connect now
        ("08006", True),  # connection failure
        ("40P01", True),  # deadlock: the next try passes
        ("40001", True),  # serialization failure
        ("53300", True),  # too many connections
        ("3D000", True),  # no such database: an operator's fix, never a message's fault
        ("42P01", True),  # no such table: a migration not run
    ],
)
def test_only_data_and_constraint_errors_are_a_messages_own(sqlstate: str, transient: bool) -> None:
    assert transient_database_error(_database_error(sqlstate)) is transient


def test_a_lost_connection_a_full_pool_or_a_concurrent_change_is_transient() -> None:
    assert transient_database_error(PoolTimeout("QueuePool limit reached"))
    assert transient_database_error(_database_error(None, invalidated=True))
    assert transient_database_error(_database_error(None))
    assert transient_database_error(ConcurrentChange("another worker was first"))
    assert not transient_database_error(ValueError("a bug about one message"))
