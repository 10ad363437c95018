"""Digest subscriptions, their runs (one per subscription and window), and votes on digests.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "digest_subscriptions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("workspace_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("channel_id", sa.String(32), nullable=False),
        sa.Column("channel_type", sa.String(16), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("cron", sa.String(100), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_digest_subscriptions_place", "digest_subscriptions", ["workspace_id", "channel_id"])
    op.create_table(
        "digest_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "subscription_id",
            sa.Integer(),
            sa.ForeignKey("digest_subscriptions.id", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column("workspace_id", sa.String(32), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("channel_id", sa.String(32), nullable=True),
        sa.Column("message_ts", sa.String(32), nullable=True),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
    )
    # NULL subscription ids (on-demand catch-ups) never collide: both SQLite and PostgreSQL treat NULLs
    # as distinct in a unique index.
    op.create_index("ux_digest_runs_window", "digest_runs", ["subscription_id", "window_start"], unique=True)
    op.create_index("ix_digest_runs_message", "digest_runs", ["channel_id", "message_ts"])
    op.create_table(
        "digest_votes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("digest_runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ux_digest_votes_run_user", "digest_votes", ["run_id", "user_id"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_digest_votes_run_user", "digest_votes")
    op.drop_table("digest_votes")
    op.drop_index("ix_digest_runs_message", "digest_runs")
    op.drop_index("ux_digest_runs_window", "digest_runs")
    op.drop_table("digest_runs")
    op.drop_index("ix_digest_subscriptions_place", "digest_subscriptions")
    op.drop_table("digest_subscriptions")
