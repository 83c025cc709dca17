"""The referral path at scale: a flag's body stored once (tasks reference it), a flag count
per case, packet versions built when needed, a partial index for the SLA sweep over waiting
cases only, and the parked messages a person must look at.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column(
        "cases", sa.Column("flag_count", sa.Integer(), nullable=False, server_default="0")
    )
    op.execute(
        "UPDATE cases SET flag_count = counted.n FROM "
        "(SELECT case_id, count(*) AS n FROM tasks GROUP BY case_id) AS counted "
        "WHERE cases.case_id = counted.case_id"
    )
    # The flag is stored once, in flags.body; a task keeps only what is its own.
    op.execute("UPDATE tasks SET body = body - 'flag' WHERE body ? 'flag'")
    op.create_index("ix_tasks_case_id_attached_version", "tasks", ["case_id", "attached_version"])
    op.drop_index("ix_cases_due_at", table_name="cases")
    op.create_index(
        "ix_cases_due_at_waiting",
        "cases",
        ["due_at"],
        postgresql_where=sa.text("due_at IS NOT NULL"),
    )
    op.create_table(
        "parked_messages",
        sa.Column("topic", sa.String(249), primary_key=True),
        sa.Column("partition", sa.Integer(), primary_key=True),
        sa.Column("offset", sa.BigInteger(), primary_key=True),
        sa.Column("consumer_group", sa.String(255), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("flag_id", sa.Uuid()),
        sa.Column("error_type", sa.String(128), nullable=False),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("parked_at", TS, nullable=False),
        sa.Column("resolved_at", TS),
        comment="Messages that could not be stored after bounded tries: for a person to look at. "
        "Never the bytes: where they were, their hash and why.",
    )


def downgrade() -> None:
    op.drop_table("parked_messages")
    op.drop_index("ix_cases_due_at_waiting", table_name="cases")
    op.create_index("ix_cases_due_at", "cases", ["due_at"])
    op.drop_index("ix_tasks_case_id_attached_version", table_name="tasks")
    op.drop_column("cases", "flag_count")
    # Revision 0002's code reads the flag from the task.
    op.execute(
        "UPDATE tasks SET body = tasks.body || jsonb_build_object('flag', flags.body) "
        "FROM flags WHERE tasks.flag_id = flags.flag_id AND NOT tasks.body ? 'flag'"
    )
