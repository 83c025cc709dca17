"""The audit trail's append in one round trip; keys' last use; the key holder on the trail.

`audit_append(...)` takes the audit lock (a transaction-level advisory lock, as before), reads
the last entry, and inserts the next entries (one or more) with their sequence numbers and
hashes, all in the caller's transaction. The hash is sha256 over the last hash, a line break,
and the entry's canonical JSON; the caller sends that JSON up to its last key (`"seq":`, the
last in sorted order), and the function appends the number it assigned and the closing brace.
The chain is the one `services.referral.audit` has made since 0007: `csae audit verify` checks
old and new entries alike. Each statement of a PL/pgSQL function takes a fresh snapshot under
READ COMMITTED, so the last entry is read after the lock is held (one plain statement could
not: its snapshot would predate the wait).

Table `api_key_uses` holds when each API key was last used, as each API process flushes what it
saw (at most every `CSAE_API_KEY_USE_FLUSH_SECONDS`): no write per request. The audit actor
widens to hold a key's holder label beside its id.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AUDIT_LOCK = 0x63736165_0003
"""`services.referral.audit.AUDIT_LOCK` (repeated: a migration does not import the app)."""


def upgrade() -> None:
    op.create_table(
        "api_key_uses",
        sa.Column("key_id", sa.String(12), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key_id", name="pk_api_key_uses"),
        comment="When each API key (by id: the first characters of its hash) was last used, "
        "as flushed by the API processes every few seconds.",
    )
    op.alter_column("audit_log", "actor", type_=sa.String(160), existing_nullable=False)
    # One entry (an API request) or several (the worker's system moves of a batch) in one
    # round trip: the values as text, one array element per entry, chained in array order.
    op.execute(
        """
        CREATE FUNCTION audit_append(
            p_at timestamptz, p_actor text[], p_action text[], p_route text[],
            p_request_id text[], p_case_id text[], p_packet_version text[], p_flag_id text[],
            p_detail text[], p_outcome text[], p_body text[]
        ) RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
        DECLARE
            last_seq bigint;
            last_hash text;
            next_hash text;
        BEGIN
            PERFORM pg_advisory_xact_lock(AUDIT_LOCK);
            SELECT seq, hash INTO last_seq, last_hash FROM audit_log ORDER BY seq DESC LIMIT 1;
            IF NOT FOUND THEN
                last_seq := 0;
                last_hash := repeat('0', 64);
            END IF;
            FOR i IN 1 .. coalesce(array_length(p_body, 1), 0) LOOP
                next_hash := encode(sha256(convert_to(
                    last_hash || E'\\n' || p_body[i] || (last_seq + 1)::text || '}', 'UTF8'
                )), 'hex');
                INSERT INTO audit_log (
                    seq, at, actor, action, route, request_id, case_id, packet_version,
                    flag_id, detail, outcome, prev_hash, hash
                ) VALUES (
                    last_seq + 1, p_at, p_actor[i], p_action[i], p_route[i], p_request_id[i],
                    p_case_id[i]::uuid, p_packet_version[i]::integer, p_flag_id[i]::uuid,
                    p_detail[i]::jsonb, p_outcome[i], last_hash, next_hash
                );
                last_seq := last_seq + 1;
                last_hash := next_hash;
            END LOOP;
            RETURN last_seq;
        END $$
        """.replace("AUDIT_LOCK", str(AUDIT_LOCK))
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION audit_append")
    # An actor longer than 64 (one with a holder) cannot go back: the downgrade then fails.
    op.alter_column("audit_log", "actor", type_=sa.String(64), existing_nullable=False)
    op.drop_table("api_key_uses")
