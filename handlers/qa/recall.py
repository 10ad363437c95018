"""Ember's day-time memory: pinned facts and corrections, recalled for later questions.

A Slack-free service over db.search (hybrid keyword + vector search) that keeps an in-process vector
index in step with the database. What may be recalled where is decided by db.visibility alone;
corrections are written by db.feedback.remember_correction, with this recall's embedder and index.
"""

from __future__ import annotations

import logging

from db import Database
from db.memory import Embeds, add_memory, reembed_memories
from db.repo import Conversation, Forgotten, forget_user
from db.search import MemoryHit, search_memories
from db.vector_index import VectorIndex
from db.visibility import Audience

log = logging.getLogger(__name__)

# Below this cosine a vector-only match is noise for MiniLM; keyword matches always count.
MIN_SIMILARITY = 0.35
RECALL_K = 4


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
        with self.db.session() as session:
            memory = add_memory(
                session,
                embedder=self.embedder,
                index=self.index,
                workspace_id=conversation.workspace_id,
                channel_id=conversation.channel_id,
                channel_type=conversation.channel_type,
                thread_ts=conversation.thread_ts,
                user_id=user_id,
                kind="fact",
                text=text,
                source_ts=source_ts,
            )
            return memory.id

    def search(self, *, audience: Audience, query: str, k: int = RECALL_K) -> list[MemoryHit]:
        with self.db.session() as session:
            hits = search_memories(
                session, audience=audience, query=query, embedder=self.embedder, k=k, index=self.index
            )
        return [hit for hit in hits if hit.similarity is None or hit.similarity >= MIN_SIMILARITY]

    def forget(self, *, workspace_id: str, user_id: str) -> Forgotten:
        """Delete everything stored of one person in one workspace: turns, votes, memories, vectors."""
        with self.db.session() as session:
            return forget_user(session, workspace_id=workspace_id, user_id=user_id, index=self.index)
