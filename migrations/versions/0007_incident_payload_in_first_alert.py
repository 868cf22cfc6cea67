"""The raw alert payload is stored once, with the alert event that opened the incident

`incidents.payload` held the opening request's body (~1 KB) in the one row that
every state change rewrites: PostgreSQL copies the whole row version on each of
the ~7 transitions of an incident (no HOT update: status is indexed), so that
kilobyte was written again and again and its dead copies bloated the table
(bench/pipeline.py: ~7 KB of `incidents` per incident). The body now lives in
`alert_events.raw` of the first alert event, as it already did for every alert
that joined an open incident, and the row that moves is ~0.3 KB.

Upgrade copies each incident's payload into its first alert event (creating one
for an incident that has none) before dropping the column; downgrade puts it
back from there (NOT NULL again on PostgreSQL; on SQLite the column stays
nullable rather than re-create a table other tables cascade from). Nothing is
lost either way.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_FIRST_EVENT = "(SELECT MIN(a2.id) FROM alert_events a2 WHERE a2.incident_id = alert_events.incident_id)"


def upgrade() -> None:
    bind = op.get_bind()
    empty = "CAST('{}' AS JSONB)" if bind.dialect.name == "postgresql" else "'{}'"
    op.execute(
        "INSERT INTO alert_events (incident_id, received_at, status, fingerprint, alert, raw) "
        f"SELECT i.id, i.created_at, 'firing', i.fingerprint, {empty}, i.payload FROM incidents i "
        "WHERE NOT EXISTS (SELECT 1 FROM alert_events a WHERE a.incident_id = i.id)"
    )
    op.execute(
        "UPDATE alert_events SET raw = "
        "(SELECT i.payload FROM incidents i WHERE i.id = alert_events.incident_id) "
        f"WHERE alert_events.id = {_FIRST_EVENT}"
    )
    # Not batch mode on SQLite: it would re-create `incidents`, and dropping the old
    # table with foreign keys on cascades to every alert, transition and result.
    # SQLite >= 3.35 drops a plain column in place.
    op.drop_column("incidents", "payload")


def downgrade() -> None:
    from iras.models import JsonType

    op.add_column("incidents", sa.Column("payload", JsonType, nullable=True))
    op.execute(
        "UPDATE incidents SET payload = (SELECT COALESCE(a.raw, a.alert) FROM alert_events a "
        "WHERE a.incident_id = incidents.id ORDER BY a.id LIMIT 1)"
    )
    op.execute(f"UPDATE alert_events SET raw = NULL WHERE alert_events.id = {_FIRST_EVENT}")
    if op.get_bind().dialect.name != "sqlite":  # SQLite cannot add NOT NULL in place (see upgrade)
        op.alter_column("incidents", "payload", existing_type=JsonType, nullable=False)
