"""Delivery receipts: what was sent to each receiver, when, by whom, and its reference; and an
index to find a subject's NCA and NCMEC cases, whose reports name each other.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "delivery_receipts",
        sa.Column("receipt_id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("packet_version", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("destination_key", sa.String(128), nullable=False),
        sa.Column("sent_at", TS, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("external_reference", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.case_id"], name="fk_delivery_receipts_case_id_cases"
        ),
        sa.PrimaryKeyConstraint("receipt_id", name="pk_delivery_receipts"),
        comment="What was sent for a case (packet version, format, sha256 of the bytes as "
        "served), when, by whom, and the receiver's reference. Never the packet itself.",
    )
    op.create_index(
        "ix_delivery_receipts_case_id_sent_at", "delivery_receipts", ["case_id", "sent_at"]
    )
    op.create_index(
        "ix_cases_statutory_subject",
        "cases",
        ["org_id", "subject_account_id"],
        postgresql_where=sa.text("(destination = 'nca' OR mechanism = 'ncmec_cybertipline')"),
    )


def downgrade() -> None:
    op.drop_index("ix_cases_statutory_subject", table_name="cases")
    op.drop_index("ix_delivery_receipts_case_id_sent_at", table_name="delivery_receipts")
    op.drop_table("delivery_receipts")
