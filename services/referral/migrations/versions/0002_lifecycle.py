"""Case lifecycle: a timestamp per state, the external reference, SLA clocks and breach marks,
the transition log, and supplementary packets.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
CASE_TIMESTAMPS = (
    "due_at",
    "reviewed_at",
    "submitted_at",
    "acknowledged_at",
    "closed_at",
    "dismissed_at",
    "review_breached_at",
    "ready_breached_at",
    "submitted_breached_at",
)


def upgrade() -> None:
    for column in CASE_TIMESTAMPS:
        op.add_column("cases", sa.Column(column, TS))
    op.add_column("cases", sa.Column("due_stage", sa.String(16)))
    for stage in ("review", "ready", "submitted"):
        op.add_column("cases", sa.Column(f"{stage}_due_priority", sa.String(2)))
    op.execute("UPDATE cases SET submitted_due_priority = priority")
    op.alter_column("cases", "submitted_due_priority", nullable=False)
    op.add_column("cases", sa.Column("external_reference", sa.String(64)))
    op.add_column("cases", sa.Column("submitted_version", sa.Integer()))
    op.alter_column("cases", "ready_due_at", nullable=True)
    op.create_index("ix_cases_due_at", "cases", ["due_at"])
    # Cases from 0001 are either in review or ready: start the clock they wait on. 0001 gave a
    # review case a ready deadline too; its review deadline is the one that counts.
    op.execute(
        "UPDATE cases SET due_at = review_due_at, due_stage = 'review', ready_due_at = NULL "
        "WHERE status = 'review'"
    )
    # A 0001 case became ready before this release could measure it: its ready stage is history,
    # not a breach to page anyone about now. Open stages (review, submission) are still counted.
    op.execute("UPDATE cases SET ready_breached_at = now() WHERE ready_at IS NOT NULL")
    op.execute("UPDATE cases SET review_due_priority = priority WHERE review_due_at IS NOT NULL")
    op.execute("UPDATE cases SET ready_due_priority = priority WHERE ready_due_at IS NOT NULL")
    op.execute(
        "UPDATE cases SET due_at = submitted_due_at, due_stage = 'submitted' WHERE status = 'ready'"
    )

    op.add_column("tasks", sa.Column("attached_version", sa.Integer(), server_default="0"))
    op.alter_column("tasks", "attached_version", nullable=False, server_default=None)
    op.add_column("packets", sa.Column("supplements_version", sa.Integer()))

    op.create_table(
        "case_transitions",
        sa.Column("transition_id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.Uuid(), sa.ForeignKey("cases.case_id"), nullable=False, index=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("from_status", sa.String(16)),
        sa.Column("to_status", sa.String(16), nullable=False),
        sa.Column("external_reference", sa.String(64)),
        sa.Column("note", sa.String(1000)),
        sa.Column("packet_version", sa.Integer()),
        comment="Every change of a case's state, with its actor and reason. Append-only.",
    )


def downgrade() -> None:
    op.drop_table("case_transitions")
    op.drop_column("packets", "supplements_version")
    op.drop_column("tasks", "attached_version")
    op.drop_index("ix_cases_due_at", table_name="cases")
    op.execute("UPDATE cases SET ready_due_at = submitted_due_at WHERE ready_due_at IS NULL")
    op.alter_column("cases", "ready_due_at", nullable=False)
    for column in (
        *CASE_TIMESTAMPS,
        "due_stage",
        "review_due_priority",
        "ready_due_priority",
        "submitted_due_priority",
        "external_reference",
        "submitted_version",
    ):
        op.drop_column("cases", column)
