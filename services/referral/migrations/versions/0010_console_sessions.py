"""Console sessions: a browser signed in to the safeguarding console, kept in PostgreSQL so
every API process behind one address knows it; the token and the API key stored hashed.

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_seen_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name="pk_console_sessions"),
        comment="Signed-in browser sessions of the safeguarding console, shared by every API "
        "process. The session token and the API key are stored hashed, never as given.",
    )
    op.create_index("ix_console_sessions_last_seen_at", "console_sessions", ["last_seen_at"])


def downgrade() -> None:
    op.drop_index("ix_console_sessions_last_seen_at", table_name="console_sessions")
    op.drop_table("console_sessions")
