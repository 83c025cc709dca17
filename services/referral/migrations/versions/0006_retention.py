"""Retention: a legal hold per case, the mark of a redacted case, and a record of each run.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column(
        "cases", sa.Column("legal_hold", sa.Boolean(), nullable=False, server_default="false")
    )
    op.add_column("cases", sa.Column("legal_hold_note", sa.String(1000)))
    op.add_column("cases", sa.Column("redacted_at", TS))
    op.create_table(
        "retention_runs",
        sa.Column("run_id", sa.Uuid(), primary_key=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("cutoff", TS, nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        comment="What each retention run deleted or redacted, by kind.",
    )


def downgrade() -> None:
    op.drop_table("retention_runs")
    op.drop_column("cases", "redacted_at")
    op.drop_column("cases", "legal_hold_note")
    op.drop_column("cases", "legal_hold")
