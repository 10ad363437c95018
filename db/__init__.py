"""Ember's memory: a typed SQLAlchemy 2.x schema, sessions, repository functions, Alembic migrations.

Importing this package never imports torch.
"""

from db.schema import Base, HandledEvent, Memory, ToolCall, Turn
from db.session import Database, upgrade

__all__ = ["Base", "Database", "HandledEvent", "Memory", "ToolCall", "Turn", "upgrade"]
