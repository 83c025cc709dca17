"""Escalation across the flags of a case: the policy version a case was opened under, and the
ledger of the active rules that fired on its flags (see `services/referral/escalation.py`).

Open cases get both from their stored tasks: the version of their first task, and the first flag
each active rule fired on. Closed cases keep an empty ledger and no version (they never move
again by a flag). An open case whose flags already meet an escalation escalates when its next
flag arrives (the escalation's task then names that flag as the one that completed it).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("cases", sa.Column("policy_version", sa.String(64)))
    op.add_column(
        "cases",
        sa.Column("fired_rules", JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
    )
    # Escalation reads every open case of a subject: found by organisation and account.
    op.create_index(
        "ix_cases_open_subject",
        "cases",
        ["org_id", "subject_account_id"],
        postgresql_where=sa.text("status IN ('review', 'ready', 'submitted', 'acknowledged')"),
    )
    op.execute(
        "UPDATE cases SET policy_version = ("
        "  SELECT t.body->>'policy_version' FROM tasks t WHERE t.case_id = cases.case_id"
        "  ORDER BY t.received_at, t.task_id LIMIT 1) "
        "WHERE status IN ('review', 'ready', 'submitted', 'acknowledged')"
    )
    op.execute(
        "UPDATE cases SET fired_rules = COALESCE(("
        "  SELECT jsonb_object_agg(rule_id, jsonb_build_object("
        "    'flag_id', flag_id, 'criteria', criteria))"
        "  FROM (SELECT DISTINCT ON (rule->>'rule_id') rule->>'rule_id' AS rule_id,"
        "          t.flag_id::text AS flag_id, rule->'criteria' AS criteria"
        "        FROM tasks t, jsonb_array_elements(t.body->'rules') AS rule"
        "        WHERE t.case_id = cases.case_id AND rule->>'mode' = 'active'"
        "        ORDER BY rule->>'rule_id', t.received_at, t.task_id) AS fired"
        "), '{}'::jsonb) "
        "WHERE status IN ('review', 'ready', 'submitted', 'acknowledged')"
    )


def downgrade() -> None:
    op.drop_index("ix_cases_open_subject", table_name="cases")
    op.drop_column("cases", "fired_rules")
    op.drop_column("cases", "policy_version")
