"""postmortems.markdown nullable: the Markdown is rendered from `data` when read

A post-mortem kept its narrative twice, as data (JSON) and as the Markdown
rendered from that data (~1.2 KB per incident in bench/pipeline.py). New
post-mortems store the data only and `PostMortemRecord.markdown` renders it on
read; rows written before keep their stored copy.

Downgrade renders the Markdown of the rows that have none, so the NOT NULL
column of 0005 holds for every row again.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("postmortems", schema=None) as batch_op:
        batch_op.alter_column("markdown", existing_type=sa.Text(), nullable=True)


def downgrade() -> None:
    from iras.postmortem import render_markdown
    from iras.schemas import PostMortem

    bind = op.get_bind()
    postmortems = sa.table(
        "postmortems",
        sa.column("incident_id", sa.String()),
        sa.column("data", sa.JSON()),
        sa.column("markdown", sa.Text()),
    )
    rows = bind.execute(
        sa.select(postmortems.c.incident_id, postmortems.c.data).where(postmortems.c.markdown.is_(None))
    ).all()
    for incident_id, data in rows:
        bind.execute(
            postmortems.update()
            .where(postmortems.c.incident_id == incident_id)
            .values(markdown=render_markdown(PostMortem.model_validate(data)))
        )
    with op.batch_alter_table("postmortems", schema=None) as batch_op:
        batch_op.alter_column("markdown", existing_type=sa.Text(), nullable=False)
