"""Claims on Slack events name their owner and keep what is needed to answer them; running processes
beat a heartbeat, so the claims of one that died are taken over (db.claims).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("handled_events") as table:
        table.add_column(sa.Column("owner", sa.String(128), nullable=True))
        table.add_column(sa.Column("work", sa.Text(), nullable=True))
        table.add_column(sa.Column("replies", sa.Text(), nullable=True))
    op.create_index("ix_handled_events_owner", "handled_events", ["status", "owner"])
    op.create_table(
        "instances",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("instances")
    op.drop_index("ix_handled_events_owner", table_name="handled_events")
    with op.batch_alter_table("handled_events") as table:
        table.drop_column("replies")
        table.drop_column("work")
        table.drop_column("owner")
