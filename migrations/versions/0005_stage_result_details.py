"""stage_results.details: what the analyst reported beside its typed result

The verification report of a Claude stage (citations dropped, deployments
rejected, confidence before/after), evidence-budget statistics, the offline
analyst's evidence-based severity and its reasons. Kept for the audit trail:
what the model claimed versus what was checked.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("stage_results", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "details",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("stage_results", schema=None) as batch_op:
        batch_op.drop_column("details")
