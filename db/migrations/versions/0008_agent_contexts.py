"""What each person is looking at beside Ember's agent view (db.assistant).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agent_contexts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("workspace_id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("channel_id", sa.String(32), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ux_agent_contexts_user", "agent_contexts", ["workspace_id", "user_id"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_agent_contexts_user", table_name="agent_contexts")
    op.drop_table("agent_contexts")
