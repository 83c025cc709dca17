"""Read indexes for the case API: every list filter with its order, the bounded case detail.

Each equality filter of `GET /v1/cases` (status, destination, priority, force) has a composite
index ending with the list's order (created_at, case_id), so a filtered page is read in order and
stops after `limit` rows; the single-column indexes they lead with are dropped (the composites
serve the same lookups). `criterion` (an array) has a GIN index: with another filter the planner
ANDs the bitmaps, so a rare combination is not found by walking the whole table in order.
`overdue=true` orders by (due_at, case_id): partial indexes over the waiting cases (due_at set,
a small share of all cases) for it alone and with each filter. The case detail reads the latest
transitions and flags of a case: (case_id, transition_id) and (case_id, routed_at).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FILTERS = ("status", "destination", "priority", "force_id")
WAITING = sa.text("due_at IS NOT NULL")


def upgrade() -> None:
    for column in FILTERS:
        op.create_index(f"ix_cases_{column}_created", "cases", [column, "created_at", "case_id"])
        op.drop_index(f"ix_cases_{column}", table_name="cases")
        op.create_index(
            f"ix_cases_{column}_due",
            "cases",
            [column, "due_at", "case_id"],
            postgresql_where=WAITING,
        )
    op.create_index("ix_cases_criteria", "cases", ["criteria"], postgresql_using="gin")
    op.create_index(
        "ix_cases_due_waiting", "cases", ["due_at", "case_id"], postgresql_where=WAITING
    )
    op.drop_index("ix_cases_due_at_waiting", table_name="cases")
    op.create_index(
        "ix_case_transitions_case_id_transition", "case_transitions", ["case_id", "transition_id"]
    )
    op.drop_index("ix_case_transitions_case_id", table_name="case_transitions")
    op.create_index("ix_tasks_case_id_routed_at", "tasks", ["case_id", "routed_at"])


def downgrade() -> None:
    op.drop_index("ix_tasks_case_id_routed_at", table_name="tasks")
    op.create_index("ix_case_transitions_case_id", "case_transitions", ["case_id"])
    op.drop_index("ix_case_transitions_case_id_transition", table_name="case_transitions")
    op.create_index("ix_cases_due_at_waiting", "cases", ["due_at"], postgresql_where=WAITING)
    op.drop_index("ix_cases_due_waiting", table_name="cases")
    op.drop_index("ix_cases_criteria", table_name="cases")
    for column in FILTERS:
        op.drop_index(f"ix_cases_{column}_due", table_name="cases")
        op.create_index(f"ix_cases_{column}", "cases", [column])
        op.drop_index(f"ix_cases_{column}_created", table_name="cases")
