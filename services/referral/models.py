"""Tables of the referral service. Personal identifiers stay here and in packets, never in logs."""

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.referral.enums import CaseStatus

Timestamp = DateTime(timezone=True)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_name)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Flag(Base):
    __tablename__ = "flags"
    __table_args__ = {"comment": "Every flag the worker has seen in a task, metadata only."}

    flag_id: Mapped[UUID] = mapped_column(primary_key=True)
    org_id: Mapped[str] = mapped_column(String(128))
    source_kind: Mapped[str] = mapped_column(String(32))
    detected_at: Mapped[datetime] = mapped_column(Timestamp)
    received_at: Mapped[datetime] = mapped_column(Timestamp)
    body: Mapped[dict[str, Any]] = mapped_column(JSONB)
    """The validated `ModerationFlag`, which by contract holds no content."""


class DecisionRecord(Base):
    __tablename__ = "decisions"
    __table_args__ = {"comment": "The router's decision for every flag, no-report ones included."}

    flag_id: Mapped[UUID] = mapped_column(primary_key=True)
    outcome: Mapped[str] = mapped_column(String(16), index=True)
    priority: Mapped[str | None] = mapped_column(String(2))
    criteria: Mapped[list[str]] = mapped_column(ARRAY(String(16)))
    immediate_danger: Mapped[bool] = mapped_column(Boolean)
    policy_version: Mapped[str] = mapped_column(String(64))
    decided_at: Mapped[datetime] = mapped_column(Timestamp)
    body: Mapped[dict[str, Any]] = mapped_column(JSONB)


OPEN_CASE_PREDICATE = "status IN ('review', 'ready', 'submitted', 'acknowledged')"
"""The open statuses, as the partial unique index on `case_key` states them."""


STATUTORY_PREDICATE = "(destination = 'nca' OR mechanism = 'ncmec_cybertipline')"
"""The cases whose reports name each other (the NCA and NCMEC), as their partial index states."""

_FILTERED = ("status", "destination", "priority", "force_id")
"""The columns `GET /v1/cases` filters on by equality."""
_WAITING = text("due_at IS NOT NULL")


class Case(Base):
    __tablename__ = "cases"
    __table_args__ = (
        Index(
            "uq_cases_open_case_key",
            "case_key",
            unique=True,
            postgresql_where=text(OPEN_CASE_PREDICATE),
        ),
        Index("ix_cases_created_at_case_id", "created_at", "case_id"),
        # The list route's filters, each ending with its order (migration 0008).
        *(
            Index(f"ix_cases_{column}_created", column, "created_at", "case_id")
            for column in _FILTERED
        ),
        *(
            Index(f"ix_cases_{column}_due", column, "due_at", "case_id", postgresql_where=_WAITING)
            for column in _FILTERED
        ),
        Index("ix_cases_due_waiting", "due_at", "case_id", postgresql_where=_WAITING),
        Index("ix_cases_criteria", "criteria", postgresql_using="gin"),
        Index(
            "ix_cases_open_subject",
            "org_id",
            "subject_account_id",
            postgresql_where=text(OPEN_CASE_PREDICATE),
        ),
        # The subject's reports to the NCA and NCMEC, open or closed: each names the others
        # (migration 0009).
        Index(
            "ix_cases_statutory_subject",
            "org_id",
            "subject_account_id",
            postgresql_where=text(STATUTORY_PREDICATE),
        ),
        {"comment": "One case per subject and destination while open: the unit of work."},
    )

    case_id: Mapped[UUID] = mapped_column(primary_key=True)
    case_key: Mapped[str] = mapped_column(String(400))
    destination: Mapped[str] = mapped_column(String(16))
    """The destination kind: police, iwf, intl or nca."""
    destination_key: Mapped[str] = mapped_column(String(128))
    force_id: Mapped[str | None] = mapped_column(String(64))
    mechanism: Mapped[str | None] = mapped_column(String(64))
    country: Mapped[str | None] = mapped_column(String(2))
    status: Mapped[CaseStatus] = mapped_column(
        Enum(
            CaseStatus, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e]
        ),
    )
    priority: Mapped[str] = mapped_column(String(2))
    criteria: Mapped[list[str]] = mapped_column(ARRAY(String(16)))
    org_id: Mapped[str] = mapped_column(String(128))
    subject_account_id: Mapped[str] = mapped_column(String(128))
    first_detected_at: Mapped[datetime] = mapped_column(Timestamp)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)
    review_due_at: Mapped[datetime | None] = mapped_column(Timestamp)
    """When a person must have approved or dismissed the case; None if it never was in review."""
    ready_due_at: Mapped[datetime | None] = mapped_column(Timestamp)
    """When the packet must be ready; None for a case a reviewer approved (review_due_at)."""
    submitted_due_at: Mapped[datetime] = mapped_column(Timestamp)
    """When the (latest, maybe supplementary) packet must have been sent."""
    due_at: Mapped[datetime | None] = mapped_column(Timestamp)
    """The deadline of the stage the case waits in now; None when nothing is due from us."""
    due_stage: Mapped[str | None] = mapped_column(String(16))
    """The stage `due_at` belongs to: review, ready or submitted."""
    reviewed_at: Mapped[datetime | None] = mapped_column(Timestamp)
    """When the case left review (approved, dismissed, or a referral joined it)."""
    ready_at: Mapped[datetime | None] = mapped_column(Timestamp)
    """When the case last became ready (again, for a supplementary packet)."""
    submitted_at: Mapped[datetime | None] = mapped_column(Timestamp)
    acknowledged_at: Mapped[datetime | None] = mapped_column(Timestamp)
    closed_at: Mapped[datetime | None] = mapped_column(Timestamp)
    dismissed_at: Mapped[datetime | None] = mapped_column(Timestamp)
    external_reference: Mapped[str | None] = mapped_column(String(64))
    """The receiver's reference: the police incident number, the IWF report reference."""
    submitted_version: Mapped[int | None] = mapped_column(Integer)
    """The packet version last sent; later versions are supplementary."""
    review_due_priority: Mapped[str | None] = mapped_column(String(2))
    ready_due_priority: Mapped[str | None] = mapped_column(String(2))
    submitted_due_priority: Mapped[str] = mapped_column(String(2))
    """The priority whose deadline set each `*_due_at` (a supplement's: the new flags'); the
    stage's SLA metrics are labelled with it, not with the case's highest priority."""
    review_breached_at: Mapped[datetime | None] = mapped_column(Timestamp)
    ready_breached_at: Mapped[datetime | None] = mapped_column(Timestamp)
    submitted_breached_at: Mapped[datetime | None] = mapped_column(Timestamp)
    """When the sweep counted the stage's breach; set once, so a breach is counted once."""
    packet_version: Mapped[int] = mapped_column(Integer, default=0)
    """The latest packet version number; 0 while no packet is due (a case under review). A
    version's document is built the first time it is needed (see `cases`)."""
    flag_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """How many flags the case holds (an escalation's task is not one more flag)."""
    policy_version: Mapped[str | None] = mapped_column(String(64))
    """The policy version the case was opened under: it is escalated by that policy only."""
    legal_hold: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    """On hold, retention deletes and redacts nothing of the case (`csae cases hold`)."""
    legal_hold_note: Mapped[str | None] = mapped_column(String(1000))
    redacted_at: Mapped[datetime | None] = mapped_column(Timestamp)
    """When retention removed the reported account and the notes (a closed case's content)."""
    fired_rules: Mapped[dict[str, Any]] = mapped_column(
        JSONB, default=dict, server_default=text("'{}'::jsonb")
    )
    """The active rules that fired on the case's flags, and the escalations that fired across
    them (`services.referral.escalation.Ledger`)."""


class CaseTransition(Base):
    __tablename__ = "case_transitions"
    __table_args__ = (
        Index("ix_case_transitions_case_id_transition", "case_id", "transition_id"),
        {"comment": "Every change of a case's state, with its actor and reason. Append-only."},
    )

    transition_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    case_id: Mapped[UUID] = mapped_column(ForeignKey("cases.case_id"))
    at: Mapped[datetime] = mapped_column(Timestamp)
    actor: Mapped[str] = mapped_column(String(64))
    """`system`, or the API key that made the change (`<role>:<key id>`), never a name."""
    from_status: Mapped[str | None] = mapped_column(String(16))
    """None when the case was opened."""
    to_status: Mapped[str] = mapped_column(String(16))
    external_reference: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(String(1000))
    packet_version: Mapped[int | None] = mapped_column(Integer)
    """The packet version current after the change."""


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_case_id_attached_version", "case_id", "attached_version"),
        Index("ix_tasks_case_id_routed_at", "case_id", "routed_at"),
        {"comment": "Referral tasks applied to cases; the task id makes replay a no-op."},
    )

    task_id: Mapped[UUID] = mapped_column(primary_key=True)
    case_id: Mapped[UUID] = mapped_column(ForeignKey("cases.case_id"), index=True)
    flag_id: Mapped[UUID] = mapped_column(ForeignKey("flags.flag_id"), index=True)
    decision: Mapped[str] = mapped_column(String(8))
    priority: Mapped[str] = mapped_column(String(2))
    routed_at: Mapped[datetime] = mapped_column(Timestamp)
    received_at: Mapped[datetime] = mapped_column(Timestamp)
    attached_version: Mapped[int] = mapped_column(Integer)
    """The case's packet version when the task joined: later versions are the first to hold it."""
    body: Mapped[dict[str, Any]] = mapped_column(JSONB)
    """The validated `ReferralTask` without its flag, which is stored once in `flags`."""


class PacketRecord(Base):
    __tablename__ = "packets"
    __table_args__ = {"comment": "Every packet version built for a case; a version never changes."}

    case_id: Mapped[UUID] = mapped_column(ForeignKey("cases.case_id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    built_at: Mapped[datetime] = mapped_column(Timestamp)
    supplements_version: Mapped[int | None] = mapped_column(Integer)
    """For a supplementary packet, the version already sent that it adds to."""
    body: Mapped[dict[str, Any]] = mapped_column(JSONB)


class DeliveryReceipt(Base):
    __tablename__ = "delivery_receipts"
    __table_args__ = (
        Index("ix_delivery_receipts_case_id_sent_at", "case_id", "sent_at"),
        {
            "comment": "What was sent for a case (packet version, format, sha256 of the bytes as "
            "served), when, by whom, and the receiver's reference. Never the packet itself."
        },
    )

    receipt_id: Mapped[UUID] = mapped_column(primary_key=True)
    case_id: Mapped[UUID] = mapped_column(ForeignKey("cases.case_id"))
    packet_version: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(16))
    """The rendering sent: `json`, `text` or `ncmec-xml`, as `GET .../packets/{v}?format=`."""
    sha256: Mapped[str] = mapped_column(String(64))
    """sha256 hex of that rendering's bytes exactly as the API serves them."""
    size: Mapped[int] = mapped_column(Integer)
    """Their length in bytes."""
    destination_key: Mapped[str] = mapped_column(String(128))
    sent_at: Mapped[datetime] = mapped_column(Timestamp)
    """When a person recorded it sent (the `submitted` move)."""
    actor: Mapped[str] = mapped_column(String(64))
    """The API key that recorded it (`<role>:<key id>`), never a name."""
    external_reference: Mapped[str] = mapped_column(String(64))
    """The receiver's reference that came back (for NCMEC, the CyberTipline report id)."""


class ParkedMessage(Base):
    __tablename__ = "parked_messages"
    __table_args__ = {
        "comment": "Messages that could not be stored after bounded tries: for a person to look "
        "at. Never the bytes: where they were, their hash and why."
    }

    topic: Mapped[str] = mapped_column(String(249), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    offset: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    consumer_group: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    flag_id: Mapped[UUID | None] = mapped_column()
    error_type: Mapped[str] = mapped_column(String(128))
    """The class of the error (e.g. `DataError`), never its message, which may quote values."""
    tries: Mapped[int] = mapped_column(Integer)
    parked_at: Mapped[datetime] = mapped_column(Timestamp)
    resolved_at: Mapped[datetime | None] = mapped_column(Timestamp)
    """When a person replayed or closed it."""


class SourceRate(Base):
    __tablename__ = "source_rates"
    __table_args__ = (
        Index("ix_source_rates_system_minute", "system", "minute"),
        {
            "comment": "Flags that made referral tasks, per source and minute: the flood breaker's "
            "counts (kept for its baseline period)."
        },
    )

    system: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    minute: Mapped[datetime] = mapped_column(Timestamp, primary_key=True)
    """The minute the flags were detected in."""
    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    """Each worker counts in its own shard, so workers never wait on one row; readers sum."""
    flags: Mapped[int] = mapped_column(Integer)


class Breaker(Base):
    __tablename__ = "breakers"
    __table_args__ = (
        Index(
            "uq_breakers_open",
            "system",
            "version",
            unique=True,
            postgresql_where=text("closed_at IS NULL"),
        ),
        {
            "comment": "Flood breakers, open and closed: who or what closed each, and why. While "
            "one is open, its source's referrals are held as reviews."
        },
    )

    breaker_id: Mapped[UUID] = mapped_column(primary_key=True)
    system: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64))
    opened_at: Mapped[datetime] = mapped_column(Timestamp)
    reason: Mapped[str] = mapped_column(String(256))
    closed_at: Mapped[datetime | None] = mapped_column(Timestamp)
    closed_by: Mapped[str | None] = mapped_column(String(128))
    """`cool-down`, `cli:<name>` or `admin:<key id>`."""
    close_note: Mapped[str | None] = mapped_column(String(1024))
    accepted_flags: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Flags in the window when a person closed it: accepted as usual for the baseline period."""


class RetentionRun(Base):
    __tablename__ = "retention_runs"
    __table_args__ = {"comment": "What each retention run deleted or redacted, by kind."}

    run_id: Mapped[UUID] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(Timestamp)
    kind: Mapped[str] = mapped_column(String(32))
    cutoff: Mapped[datetime] = mapped_column(Timestamp)
    rows: Mapped[int] = mapped_column(Integer)


class AuditRecord(Base):
    __tablename__ = "audit_log"
    __table_args__ = {
        "comment": "Every read and write of case data, hash-chained with its predecessor. "
        "Append-only (a trigger refuses UPDATE, DELETE and TRUNCATE); never packet contents."
    }

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    """1, 2, 3... with no gap: assigned under the audit lock, so a gap means a removal."""
    at: Mapped[datetime] = mapped_column(Timestamp, index=True)
    actor: Mapped[str] = mapped_column(String(160))
    """`<role>:<key id>`, then ` (<holder>)` when the key has a holder label (who an admin
    said holds it, at most 64 characters), `cli:<name>` or `system`."""
    action: Mapped[str] = mapped_column(String(32))
    """`case.read`, `packet.read`, `flag.read`, `cases.list`, `case.transition`..."""
    route: Mapped[str | None] = mapped_column(String(128))
    """The route template (`GET /v1/cases/{case_id}`), never the raw path."""
    request_id: Mapped[str | None] = mapped_column(String(32))
    case_id: Mapped[UUID | None] = mapped_column(index=True)
    """No foreign key: the audit outlives the case retention deletes."""
    packet_version: Mapped[int | None] = mapped_column(Integer)
    flag_id: Mapped[UUID | None]
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB)
    """Bounded facts: a list's filter and row count, a move's from and to. No personal data."""
    outcome: Mapped[str] = mapped_column(String(32))
    """The HTTP status (`200`, `404`) or a result (`ok`)."""
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    """sha256 hex of `prev_hash` and the entry's canonical JSON (`services.referral.audit`)."""


class ConsoleSession(Base):
    __tablename__ = "console_sessions"
    __table_args__ = (
        Index("ix_console_sessions_last_seen_at", "last_seen_at"),
        {
            "comment": "Signed-in browser sessions of the safeguarding console, shared by every "
            "API process. The session token and the API key are stored hashed, never as given."
        },
    )

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    """sha256 hex of the session token the browser holds in its cookie."""
    key_hash: Mapped[str] = mapped_column(String(64))
    """The hash of the API key signed in with: a revoked or expired key ends the session."""
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    last_seen_at: Mapped[datetime] = mapped_column(Timestamp)
    """The session's last request: past the idle timeout, it is refused and deleted."""


class ApiKeyUse(Base):
    __tablename__ = "api_key_uses"
    __table_args__ = {
        "comment": "When each API key (by id: the first characters of its hash) was last used, "
        "as flushed by the API processes every few seconds."
    }

    key_id: Mapped[str] = mapped_column(String(12), primary_key=True)
    last_used_at: Mapped[datetime] = mapped_column(Timestamp)
    """The latest use any API process has flushed (each keeps its own in memory meanwhile)."""
