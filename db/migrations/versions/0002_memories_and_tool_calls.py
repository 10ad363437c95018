"""Memories (facts, corrections, good turns) with keyword search, and the agent's tool calls.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# SQLite's FTS5 keeps keyword search in step with the table through triggers. Other databases search
# with LIKE (db.search); PostgreSQL gets a tsvector GIN index of its own in 0006.
_FTS = [
    "CREATE VIRTUAL TABLE memories_fts USING fts5(text, question, content='memories', content_rowid='id',"
    " tokenize='porter unicode61')",
    "CREATE TRIGGER memories_ai AFTER INSERT ON memories BEGIN"
    " INSERT INTO memories_fts(rowid, text, question) VALUES (new.id, new.text, coalesce(new.question, '')); END",
    "CREATE TRIGGER memories_ad AFTER DELETE ON memories BEGIN"
    " INSERT INTO memories_fts(memories_fts, rowid, text, question)"
    " VALUES ('delete', old.id, old.text, coalesce(old.question, '')); END",
    "CREATE TRIGGER memories_au AFTER UPDATE OF text, question ON memories BEGIN"
    " INSERT INTO memories_fts(memories_fts, rowid, text, question)"
    " VALUES ('delete', old.id, old.text, coalesce(old.question, ''));"
    " INSERT INTO memories_fts(rowid, text, question) VALUES (new.id, new.text, coalesce(new.question, '')); END",
]


def upgrade() -> None:
    op.create_table(
        "memories",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("workspace_id", sa.String(32), nullable=False),
        sa.Column("channel_id", sa.String(32), nullable=False),
        sa.Column("channel_type", sa.String(16), nullable=False),
        sa.Column("thread_ts", sa.String(32), nullable=True),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("question", sa.Text(), nullable=True),
        sa.Column("source_ts", sa.String(32), nullable=True),
        sa.Column("turn_id", sa.Integer(), sa.ForeignKey("turns.id", ondelete="CASCADE"), nullable=True),
        sa.Column("embedding", sa.LargeBinary(), nullable=True),
        sa.Column("embedding_model", sa.String(100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_memories_scope", "memories", ["workspace_id", "channel_type", "channel_id"])
    op.create_table(
        "tool_calls",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("turn_id", sa.Integer(), sa.ForeignKey("turns.id", ondelete="CASCADE"), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("arguments", sa.Text(), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_tool_calls_turn_id", "tool_calls", ["turn_id"])
    if op.get_bind().dialect.name == "sqlite":
        for statement in _FTS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("memories_au", "memories_ad", "memories_ai"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS memories_fts")
    op.drop_table("tool_calls")
    op.drop_index("ix_memories_scope", "memories")
    op.drop_table("memories")
