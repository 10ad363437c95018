"""Ember's memory: a typed SQLAlchemy 2.x schema, sessions, repository functions, Alembic migrations.

Importing this package never imports torch.
"""

from db.schema import (
    Base,
    DigestRun,
    DigestSubscription,
    DigestVote,
    HandledEvent,
    Instance,
    Memory,
    ModelVersion,
    ToolCall,
    TrainingRun,
    Turn,
    Vote,
)
from db.session import Database, upgrade

__all__ = [
    "Base",
    "Database",
    "DigestRun",
    "DigestSubscription",
    "DigestVote",
    "HandledEvent",
    "Instance",
    "Memory",
    "ModelVersion",
    "ToolCall",
    "TrainingRun",
    "Turn",
    "Vote",
    "upgrade",
]
