"""core schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25 22:09:31.154948
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import iras.models

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "incidents",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("severity", sa.String(length=2), nullable=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("service", sa.String(length=255), nullable=True),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("fingerprint", sa.String(length=255), nullable=False),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("alert_count", sa.Integer(), nullable=False),
        sa.Column("last_seen", iras.models.UTCDateTime(), nullable=False),
        sa.Column("rca_attempts", sa.Integer(), nullable=False),
        sa.Column("plan_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("approval_deadline", iras.models.UTCDateTime(), nullable=True),
        sa.Column("decided_by", sa.String(length=255), nullable=True),
        sa.Column("decided_via", sa.String(length=16), nullable=True),
        sa.Column("decided_at", iras.models.UTCDateTime(), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column(
            "notify_ref",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("created_at", iras.models.UTCDateTime(), nullable=False),
        sa.Column("updated_at", iras.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
    )
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.create_index(
            "ix_incidents_awaiting_deadline",
            ["approval_deadline"],
            unique=False,
            postgresql_where=sa.text("status = 'awaiting_approval'"),
            sqlite_where=sa.text("status = 'awaiting_approval'"),
        )
        batch_op.create_index("ix_incidents_created_at", ["created_at"], unique=False)
        batch_op.create_index("ix_incidents_status_updated_at", ["status", "updated_at"], unique=False)
        batch_op.create_index(
            "uq_incidents_open_fingerprint",
            ["fingerprint"],
            unique=True,
            postgresql_where=sa.text("status NOT IN ('auto_resolved', 'escalated', 'resolved')"),
            sqlite_where=sa.text("status NOT IN ('auto_resolved', 'escalated', 'resolved')"),
        )

    op.create_table(
        "alert_events",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("incident_id", sa.String(length=36), nullable=False),
        sa.Column("received_at", iras.models.UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("fingerprint", sa.String(length=255), nullable=True),
        sa.Column(
            "alert",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "raw",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_alert_events_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_events")),
    )
    with op.batch_alter_table("alert_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alert_events_incident_id"), ["incident_id"], unique=False)

    op.create_table(
        "postmortems",
        sa.Column("incident_id", sa.String(length=36), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("severity", sa.String(length=2), nullable=True),
        sa.Column(
            "data",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("markdown", sa.Text(), nullable=False),
        sa.Column("analyst", sa.String(length=32), nullable=False),
        sa.Column("created_at", iras.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_postmortems_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("incident_id", name=op.f("pk_postmortems")),
    )
    with op.batch_alter_table("postmortems", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_postmortems_created_at"), ["created_at"], unique=False)

    op.create_table(
        "stage_results",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("incident_id", sa.String(length=36), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column(
            "result",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("analyst", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=True),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("cache_read_tokens", sa.Integer(), nullable=False),
        sa.Column("cache_creation_tokens", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", iras.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_stage_results_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stage_results")),
        sa.UniqueConstraint("incident_id", "stage", "attempt", name="uq_stage_results_attempt"),
    )
    op.create_table(
        "step_runs",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("incident_id", sa.String(length=36), nullable=False),
        sa.Column("plan_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("step_order", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("command", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("output_tail", sa.Text(), nullable=True),
        sa.Column("started_at", iras.models.UTCDateTime(), nullable=False),
        sa.Column("finished_at", iras.models.UTCDateTime(), nullable=True),
        sa.Column("rolled_back", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_step_runs_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_step_runs")),
        sa.UniqueConstraint("incident_id", "plan_id", "step_order", "kind", name="uq_step_runs_step"),
    )
    op.create_table(
        "transitions",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("incident_id", sa.String(length=36), nullable=False),
        sa.Column("from_status", sa.String(length=32), nullable=True),
        sa.Column("to_status", sa.String(length=32), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("at", iras.models.UTCDateTime(), nullable=False),
        sa.Column(
            "detail",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_transitions_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transitions")),
    )
    with op.batch_alter_table("transitions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_transitions_incident_id"), ["incident_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("transitions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_transitions_incident_id"))

    op.drop_table("transitions")
    op.drop_table("step_runs")
    op.drop_table("stage_results")
    with op.batch_alter_table("postmortems", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_postmortems_created_at"))

    op.drop_table("postmortems")
    with op.batch_alter_table("alert_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_events_incident_id"))

    op.drop_table("alert_events")
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_incidents_open_fingerprint",
            postgresql_where=sa.text("status NOT IN ('auto_resolved', 'escalated', 'resolved')"),
            sqlite_where=sa.text("status NOT IN ('auto_resolved', 'escalated', 'resolved')"),
        )
        batch_op.drop_index("ix_incidents_status_updated_at")
        batch_op.drop_index("ix_incidents_created_at")
        batch_op.drop_index(
            "ix_incidents_awaiting_deadline",
            postgresql_where=sa.text("status = 'awaiting_approval'"),
            sqlite_where=sa.text("status = 'awaiting_approval'"),
        )

    op.drop_table("incidents")
