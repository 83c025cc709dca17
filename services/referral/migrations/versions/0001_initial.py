"""Flags, decisions, cases, tasks and packets.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
OPEN = "status IN ('review', 'ready', 'submitted', 'acknowledged')"
STATUSES = ("review", "ready", "submitted", "acknowledged", "closed", "dismissed")


def upgrade() -> None:
    op.create_table(
        "flags",
        sa.Column("flag_id", sa.Uuid(), primary_key=True),
        sa.Column("org_id", sa.String(128), nullable=False),
        sa.Column("source_kind", sa.String(32), nullable=False),
        sa.Column("detected_at", TS, nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("body", postgresql.JSONB(), nullable=False),
        comment="Every flag the worker has seen in a task, metadata only.",
    )
    op.create_table(
        "decisions",
        sa.Column("flag_id", sa.Uuid(), primary_key=True),
        sa.Column("outcome", sa.String(16), nullable=False, index=True),
        sa.Column("priority", sa.String(2)),
        sa.Column("criteria", postgresql.ARRAY(sa.String(16)), nullable=False),
        sa.Column("immediate_danger", sa.Boolean(), nullable=False),
        sa.Column("policy_version", sa.String(64), nullable=False),
        sa.Column("decided_at", TS, nullable=False),
        sa.Column("body", postgresql.JSONB(), nullable=False),
        comment="The router's decision for every flag, no-report ones included.",
    )
    op.create_table(
        "cases",
        sa.Column("case_id", sa.Uuid(), primary_key=True),
        sa.Column("case_key", sa.String(400), nullable=False),
        sa.Column("destination", sa.String(16), nullable=False, index=True),
        sa.Column("destination_key", sa.String(128), nullable=False),
        sa.Column("force_id", sa.String(64), index=True),
        sa.Column("mechanism", sa.String(64)),
        sa.Column("country", sa.String(2)),
        sa.Column(
            "status",
            sa.Enum(
                *STATUSES, name="casestatus", native_enum=False, length=16, create_constraint=True
            ),
            nullable=False,
            index=True,
        ),
        sa.Column("priority", sa.String(2), nullable=False, index=True),
        sa.Column("criteria", postgresql.ARRAY(sa.String(16)), nullable=False),
        sa.Column("org_id", sa.String(128), nullable=False),
        sa.Column("subject_account_id", sa.String(128), nullable=False),
        sa.Column("first_detected_at", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("review_due_at", TS),
        sa.Column("ready_due_at", TS, nullable=False),
        sa.Column("submitted_due_at", TS, nullable=False),
        sa.Column("ready_at", TS),
        sa.Column("packet_version", sa.Integer(), nullable=False, server_default="0"),
        comment="One case per subject and destination while open: the unit of work.",
    )
    op.create_index(
        "uq_cases_open_case_key", "cases", ["case_key"], unique=True, postgresql_where=sa.text(OPEN)
    )
    op.create_index("ix_cases_created_at_case_id", "cases", ["created_at", "case_id"])
    op.create_table(
        "tasks",
        sa.Column("task_id", sa.Uuid(), primary_key=True),
        sa.Column("case_id", sa.Uuid(), sa.ForeignKey("cases.case_id"), nullable=False, index=True),
        sa.Column("flag_id", sa.Uuid(), sa.ForeignKey("flags.flag_id"), nullable=False, index=True),
        sa.Column("decision", sa.String(8), nullable=False),
        sa.Column("priority", sa.String(2), nullable=False),
        sa.Column("routed_at", TS, nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("body", postgresql.JSONB(), nullable=False),
        comment="Referral tasks applied to cases; the task id makes replay a no-op.",
    )
    op.create_table(
        "packets",
        sa.Column("case_id", sa.Uuid(), sa.ForeignKey("cases.case_id"), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("built_at", TS, nullable=False),
        sa.Column("body", postgresql.JSONB(), nullable=False),
        comment="Every packet version built for a case; a version never changes.",
    )


def downgrade() -> None:
    op.drop_table("packets")
    op.drop_table("tasks")
    op.drop_index("ix_cases_created_at_case_id", table_name="cases")
    op.drop_index("uq_cases_open_case_key", table_name="cases")
    op.drop_table("cases")
    op.drop_table("decisions")
    op.drop_table("flags")
