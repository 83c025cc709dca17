"""The flood breaker: flags per source and minute, and the breakers opened and closed.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "source_rates",
        sa.Column("system", sa.String(64), primary_key=True),
        sa.Column("version", sa.String(64), primary_key=True),
        sa.Column("minute", TS, primary_key=True),
        sa.Column("shard", sa.Integer(), primary_key=True),
        sa.Column("flags", sa.Integer(), nullable=False),
        comment="Flags that made referral tasks, per source and minute: the flood breaker's "
        "counts (kept for its baseline period).",
    )
    op.create_index("ix_source_rates_system_minute", "source_rates", ["system", "minute"])
    op.create_table(
        "breakers",
        sa.Column("breaker_id", sa.Uuid(), primary_key=True),
        sa.Column("system", sa.String(64), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("opened_at", TS, nullable=False),
        sa.Column("reason", sa.String(256), nullable=False),
        sa.Column("closed_at", TS),
        sa.Column("closed_by", sa.String(128)),
        sa.Column("close_note", sa.String(1024)),
        sa.Column("accepted_flags", sa.Integer(), nullable=False, server_default="0"),
        comment="Flood breakers, open and closed: who or what closed each, and why. While one "
        "is open, its source's referrals are held as reviews.",
    )
    op.create_index(
        "uq_breakers_open",
        "breakers",
        ["system", "version"],
        unique=True,
        postgresql_where=sa.text("closed_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("breakers")
    op.drop_table("source_rates")
