"""query indexes: incidents.service (console service list, ?service= filter)

The console lists the services incidents were opened for; `SELECT DISTINCT
service` read the whole history (~220 ms at 200,000 incidents). With this index
services.distinct_services() walks one index entry per distinct service
(~0.4 ms), and `GET /incidents?service=...` reads only that service's rows.
Measured in bench/queries.py (bench/README.md).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_incidents_service", "incidents", ["service"])


def downgrade() -> None:
    op.drop_index("ix_incidents_service", table_name="incidents")
