"""console sessions: one row per sign-in, so signing out ends it on the server

The session cookie is signed, not encrypted or stored: before this table a copy of
it taken before sign-out stayed valid until it expired (12 h). Each sign-in now
writes a row keyed by the SHA-256 of a random session id kept in the cookie;
sign-out marks the row revoked and every console request checks it.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import iras.models

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("token_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("created_at", iras.models.UTCDateTime(), nullable=False),
        sa.Column("revoked_at", iras.models.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["token_id"],
            ["api_tokens.id"],
            name=op.f("fk_console_sessions_token_id_api_tokens"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_console_sessions")),
    )


def downgrade() -> None:
    op.drop_table("console_sessions")
