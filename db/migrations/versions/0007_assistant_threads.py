"""Threads of the assistant pane and the channel each person was looking at (db.assistant).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "assistant_threads",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("workspace_id", sa.String(32), nullable=False),
        sa.Column("channel_id", sa.String(32), nullable=False),
        sa.Column("thread_ts", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("context_channel_id", sa.String(32), nullable=True),
        sa.Column("titled", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ux_assistant_threads_thread", "assistant_threads", ["channel_id", "thread_ts"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_assistant_threads_thread", table_name="assistant_threads")
    op.drop_table("assistant_threads")
