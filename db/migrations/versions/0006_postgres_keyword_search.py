"""Keyword search on PostgreSQL: a GIN index over the words of each memory (SQLite has FTS5, see 0002).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# db.search matches against this very expression, so that the planner can use the index. The translate
# splits hosts, addresses, paths and versions into their words, as FTS5 does on SQLite.
_INDEX = (
    "CREATE INDEX ix_memories_fts ON memories USING gin"
    " (to_tsvector('english', translate(text || ' ' || coalesce(question, ''), '.@/:-', '     ')))"
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_INDEX)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_memories_fts")
