"""Ember's day-time memory: pinned facts and corrections, recalled for later questions.

A Slack-free service over db.memory (hybrid keyword + vector search) that keeps an in-process vector
index in step with the database. What may be recalled where is decided by db.visibility alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import delete, func, or_, select

from db import Database
from db.memory import (
    Embeds,
    MemoryHit,
    VectorIndex,
    add_memory,
    delete_turn_memories,
    delete_user_memories,
    reembed_memories,
    search_memories,
)
from db.repo import Conversation
from db.schema import Turn, Vote
from db.visibility import Audience
from handlers.redact import redact

log = logging.getLogger(__name__)

# Below this cosine a vector-only match is noise for MiniLM; keyword matches always count.
MIN_SIMILARITY = 0.35
RECALL_K = 4


@dataclass(frozen=True)
class Forgotten:
    turns: int
    memories: int
    votes: int


class Recall:
    def __init__(self, *, db: Database, embedder: Embeds, index: VectorIndex | None = None) -> None:
        self.db = db
        self.embedder = embedder
        self.index = index

    @classmethod
    def open(cls, db: Database, embedder: Embeds) -> Recall:
        # Memories written without a vector (a correction stored while no embedder was loaded) or by
        # another embedding model are embedded now, so that every memory is searchable by meaning.
        with db.session() as session:
            embedded = reembed_memories(session, embedder=embedder)
        if embedded:
            log.info("embedded %d memories that had no vector from %s", embedded, embedder.name)
        with db.session() as session:
            index = VectorIndex.build(session, model=embedder.name)
        log.info("memory index holds %d memories", len(index))
        return cls(db=db, embedder=embedder, index=index)

    def pin_fact(self, *, conversation: Conversation, user_id: str, text: str, source_ts: str | None) -> int:
        return self._add(conversation, user_id, "fact", text, None, source_ts, None)

    def correct(
        self,
        *,
        conversation: Conversation,
        user_id: str,
        text: str,
        question: str | None,
        source_ts: str | None,
        turn_id: int | None,
    ) -> int:
        return self._add(conversation, user_id, "correction", text, question, source_ts, turn_id)

    def _add(
        self,
        conversation: Conversation,
        user_id: str,
        kind: str,
        text: str,
        question: str | None,
        source_ts: str | None,
        turn_id: int | None,
    ) -> int:
        with self.db.session() as session:
            memory = add_memory(
                session,
                embedder=self.embedder,
                workspace_id=conversation.workspace_id,
                channel_id=conversation.channel_id,
                channel_type=conversation.channel_type,
                thread_ts=conversation.thread_ts,
                user_id=user_id,
                kind=kind,
                text=redact(text),
                question=redact(question) if question else None,
                source_ts=source_ts,
                turn_id=turn_id,
                index=self.index,
            )
            return memory.id

    def search(self, *, audience: Audience, query: str, k: int = RECALL_K) -> list[MemoryHit]:
        with self.db.session() as session:
            hits = search_memories(
                session, audience=audience, query=redact(query), embedder=self.embedder, k=k, index=self.index
            )
        return [hit for hit in hits if hit.similarity is None or hit.similarity >= MIN_SIMILARITY]

    def forget(self, *, workspace_id: str, user_id: str) -> Forgotten:
        """Delete everything stored of one person in one workspace: turns, votes, memories, vectors."""
        workspace_turns = select(Turn.id).where(Turn.workspace_id == workspace_id)
        with self.db.session() as session:
            turn_ids = list(session.scalars(workspace_turns.where(Turn.user_id == user_id)))
            votes_gone = or_(Vote.user_id == user_id, Vote.turn_id.in_(turn_ids))
            votes = session.scalar(select(func.count(Vote.id)).where(Vote.turn_id.in_(workspace_turns), votes_gone))
            memories = delete_turn_memories(session, turn_ids=turn_ids, index=self.index)
            memories += delete_user_memories(session, workspace_id=workspace_id, user_id=user_id, index=self.index)
            session.execute(delete(Vote).where(Vote.turn_id.in_(workspace_turns), votes_gone))
            # Tool calls on the person's turns go with them (ON DELETE CASCADE).
            session.execute(delete(Turn).where(Turn.id.in_(turn_ids)))
        return Forgotten(turns=len(turn_ids), memories=memories, votes=int(votes or 0))
