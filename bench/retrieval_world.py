"""The retrieval benchmark's world: a synthetic history of several workspaces, the held-out
paraphrased questions whose right memory is known, storing it all through db.memory, and the real
embeddings of what is stored (cached across runs with `--cache`)."""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.retrieval_words import (
    ATTRIBUTES,
    CHATTER,
    CLOSERS,
    FOODS,
    GENERIC,
    MAX_OVERLAP,
    OPENERS,
    PROJECTS,
    SUBJECTS,
    TEAMS,
    TOPICS,
    WEEKDAYS,
    WORKSPACES,
    Attribute,
    Subject,
    content_words,
    person,
    sentence,
    slug,
)
from db.memory import NewMemory, add_memories, combine_vectors, embedding_text, embedding_texts
from db.session import Database
from db.visibility import Audience
from models.embeddings import Embedder

PUBLIC_CHANNELS, PRIVATE_CHANNELS, DMS = 40, 12, 150


@dataclass
class Workspace:
    team_id: str
    domain: str
    share: float
    public: list[str] = field(default_factory=list)
    private: list[str] = field(default_factory=list)
    dms: list[str] = field(default_factory=list)

    def channel(self, rng: random.Random) -> tuple[str, str]:
        """A random place to have said something: mostly public channels, some private, some DMs."""
        roll = rng.random()
        if roll < 0.70:
            return rng.choice(self.public), "channel"
        if roll < 0.85:
            return rng.choice(self.private), "group"
        return rng.choice(self.dms), "im"


@dataclass
class Question:
    """A held-out question with its one right memory."""

    audience: Audience
    text: str
    stored: str  # the right memory's question + text, to show how far the paraphrase is from it
    target_row: int  # index into World.real
    memory_id: int = -1  # known once stored


@dataclass
class World:
    workspaces: list[Workspace]
    real: list[NewMemory]  # targets and near neighbours: each embedded on its own
    questions: list[Question]
    pool: list[NewMemory]  # distinct generic texts whose vectors the filler reuses


def build_world(rng: random.Random, *, questions: int, pool_size: int) -> World:
    workspaces = [_workspace(team, domain, share) for team, domain, share in WORKSPACES]
    real: list[NewMemory] = []
    held_out: list[Question] = []
    for ws in workspaces:
        _topics(rng, ws, real, held_out)
        _chatter(rng, ws, real)
    rng.shuffle(held_out)
    chosen = _stratified(held_out, questions)
    return World(workspaces, real, chosen, _generic_pool(rng, workspaces, pool_size))


def _workspace(team: str, domain: str, share: float) -> Workspace:
    code = team[1:3]
    return Workspace(
        team,
        domain,
        share,
        public=[f"C{code}{i:04d}" for i in range(PUBLIC_CHANNELS)],
        private=[f"G{code}{i:04d}" for i in range(PRIVATE_CHANNELS)],
        dms=[f"D{code}{i:04d}" for i in range(DMS)],
    )


def _topics(rng: random.Random, ws: Workspace, real: list[NewMemory], held_out: list[Question]) -> None:
    """One answer memory per (subject, attribute) in this workspace, and the questions it answers.
    Half the DMs hold stale private copies; askers only ever ask from the other half."""
    stale_dms, asking_dms = ws.dms[: DMS // 2], ws.dms[DMS // 2 :]
    for subject in SUBJECTS:
        for attribute in (a for a in ATTRIBUTES if a.category == subject.category):
            value = attribute.value(rng, ws.domain, slug(subject.name))
            home, home_type, audience = _home(rng, ws, asking_dms)
            memory = _answer_memory(rng, ws, subject, attribute, value, home, home_type)
            held_out.append(_question(rng, subject, attribute, memory, audience, len(real)))
            real.append(memory)
            if home_type == "channel" and rng.random() < 0.2:
                stale = attribute.value(rng, ws.domain, slug(subject.name) + "-old")
                text = sentence(rng.choice(attribute.statements), subject, stale)
                real.append(_memory(ws, rng.choice(stale_dms), "im", "fact", f"I think {text[0].lower()}{text[1:]}"))


def _home(rng: random.Random, ws: Workspace, asking_dms: list[str]) -> tuple[str, str, Audience]:
    """Where the answer was said, and where the held-out question is asked from (a place that may see it)."""
    roll = rng.random()
    if roll < 0.80:
        home = rng.choice(ws.public)
        elsewhere = [c for c in ws.public if c != home]
        asked_in = rng.choice(elsewhere) if rng.random() < 0.8 else rng.choice(asking_dms)
        return home, "channel", Audience(ws.team_id, asked_in)
    if roll < 0.90:
        home = rng.choice(ws.private)
        return home, "group", Audience(ws.team_id, home)
    home = rng.choice(asking_dms)
    return home, "im", Audience(ws.team_id, home)


def _answer_memory(
    rng: random.Random, ws: Workspace, subject: Subject, attribute: Attribute, value: str, home: str, home_type: str
) -> NewMemory:
    statement = sentence(rng.choice(attribute.statements), subject, value)
    asked = sentence(rng.choice(attribute.asked), subject)
    roll = rng.random()
    if roll < 0.40:
        return _memory(ws, home, home_type, "fact", statement)
    if roll < 0.75:
        return _memory(ws, home, home_type, "correction", f"No, {statement[0].lower()}{statement[1:]}", asked)
    return _memory(ws, home, home_type, "turn", statement, asked)


def _question(
    rng: random.Random, subject: Subject, attribute: Attribute, memory: NewMemory, audience: Audience, row: int
) -> Question:
    """A rewording of the question this memory answers: a phrasing from a bank that is never stored,
    usually another name for the subject, and the asker's own opener and closer. One that shares more
    than MAX_OVERLAP of its topic words with the stored memory is redrawn."""
    stored = embedding_text(memory.text, memory.question)
    stored_words = content_words(stored)
    phrase = ""
    for _ in range(20):
        name = rng.choice(subject.aliases) if subject.aliases and rng.random() < 0.75 else subject.name
        body = rng.choice(attribute.paraphrases).format(a=name)
        phrase = f"{rng.choice(OPENERS)}{body}{rng.choice(CLOSERS)}"
        words = content_words(phrase)
        if len(words & stored_words) <= MAX_OVERLAP * len(words):
            break
    return Question(audience, phrase, stored, target_row=row)


def _chatter(rng: random.Random, ws: Workspace, real: list[NewMemory]) -> None:
    for subject in SUBJECTS:
        for question, answer in CHATTER[subject.category]:
            name = rng.choice([subject.name, *subject.aliases])
            fill = {"a": name, "s": subject.name, "S": subject.name[0].upper() + subject.name[1:]}
            fill |= {"t": rng.choice(TEAMS), "p": person(rng)}
            channel, channel_type = ws.channel(rng)
            kind = "turn" if question else "fact"
            asked = question.format(**fill) if question else None
            real.append(_memory(ws, channel, channel_type, kind, answer.format(**fill), asked))


def _generic_pool(rng: random.Random, workspaces: list[Workspace], size: int) -> list[NewMemory]:
    """Distinct everyday texts (reviews, lunches, stand-ups...). They never mention the subjects: each is
    stored many times over, and a block of identical vectors next to a question is not what a real
    history holds (the subjects' own chatter is embedded one by one, with the answers)."""
    seen: set[str] = set()
    pool: list[NewMemory] = []
    ws = workspaces[0]  # placement is decided per filler row; only the text and kind matter here
    while len(pool) < size:
        question, answer = rng.choice(GENERIC)
        fill = {"n": str(rng.randrange(100, 9999)), "j": rng.choice(PROJECTS), "w": rng.choice(WEEKDAYS)}
        fill |= {"p": person(rng), "q": person(rng), "h": str(rng.randrange(9, 18)), "f": rng.choice(FOODS)}
        fill |= {"x": rng.choice(TOPICS), "d": str(rng.randrange(1, 9)), "t": rng.choice(TEAMS)}
        fill["J"] = fill["j"].upper()[:4]
        asked = question.format(**fill) if question else None
        said = answer.format(**fill)
        if embedding_text(said, asked) in seen:
            continue
        seen.add(embedding_text(said, asked))
        kind = "turn" if question else rng.choice(["fact", "fact", "correction"])
        pool.append(_memory(ws, ws.public[0], "channel", kind, said, asked))
    return pool


def _memory(
    ws: Workspace, channel: str, channel_type: str, kind: str, said: str, question: str | None = None
) -> NewMemory:
    return NewMemory(ws.team_id, channel, channel_type, "U" + channel[1:], kind, said, question)


def _stratified(held_out: list[Question], count: int) -> list[Question]:
    """Questions from each workspace in proportion to its share of the history (the big one is the
    hard one to search); public, private and DM answers come in the proportions they were made."""
    chosen: list[Question] = []
    for team, _, share in WORKSPACES:
        mine = [q for q in held_out if q.audience.workspace_id == team]
        chosen += mine[: max(1, round(count * share))]
    return chosen[:count]


# --- loading -------------------------------------------------------------------------------------

BATCH = 5_000
PER_TRANSACTION = 50_000


def filler_batches(rng: random.Random, world: World, count: int) -> Iterator[tuple[list[NewMemory], list[int]]]:
    """Batches of filler memories placed across the workspaces, each with the pool row it reuses."""
    shares = [ws.share for ws in world.workspaces]
    left = count
    while left > 0:
        size = min(BATCH, left)
        picks = rng.choices(range(len(world.pool)), k=size)
        places = rng.choices(world.workspaces, weights=shares, k=size)
        rows = []
        for pick, ws in zip(picks, places, strict=True):
            channel, channel_type = ws.channel(rng)
            item = world.pool[pick]
            thread = f"{1_700_000_000 + rng.randrange(10**7)}.{rng.randrange(10**6):06d}"
            rows.append(
                NewMemory(
                    ws.team_id, channel, channel_type, "U" + channel[1:], item.kind, item.text, item.question, thread
                )
            )
        yield rows, picks
        left -= size


def mixed_batches(rng: random.Random, world: World, total: int) -> Iterator[tuple[list[NewMemory], list[int]]]:
    """The real memories spread evenly through the filler. A real memory's pick is ~row (negative)."""
    order = list(range(len(world.real)))
    rng.shuffle(order)
    filler = max(0, total - len(order))
    per_batch = max(1, -(-len(order) * BATCH // max(1, filler + len(order))))
    position = 0
    for rows, picks in filler_batches(rng, world, filler):
        take = order[position : position + per_batch]
        position += len(take)
        yield rows + [world.real[i] for i in take], picks + [~i for i in take]
    while position < len(order):
        take = order[position : position + BATCH]
        position += len(take)
        yield [world.real[i] for i in take], [~i for i in take]


def load(db: Database, embedder: Embedder, world: World, *, total: int, real: np.ndarray, pool: np.ndarray) -> float:
    """Store every real memory and filler up to `total`, in batched transactions; returns the seconds spent."""
    rng = random.Random(7)
    by_row = {question.target_row: question for question in world.questions}
    stored, started, reported = 0, time.perf_counter(), 0.0
    batches = mixed_batches(rng, world, total)
    while stored < total and (chunk := _take(batches, PER_TRANSACTION // BATCH)):
        with db.session() as session:
            for rows, picks in chunk:
                vectors = np.stack([real[~pick] if pick < 0 else pool[pick] for pick in picks])
                ids = add_memories(session, embedder=embedder, items=rows, vectors=vectors)
                for memory_id, pick in zip(ids, picks, strict=True):
                    if pick < 0 and ~pick in by_row:
                        by_row[~pick].memory_id = memory_id
                stored += len(rows)
        elapsed = time.perf_counter() - started
        if elapsed - reported > 10 or stored >= total:
            reported = elapsed
            print(f"  stored {stored:>9,} / {total:,}   {stored / elapsed:>8,.0f} items/s", flush=True)
    return time.perf_counter() - started


def _take(batches: Iterator[tuple[list[NewMemory], list[int]]], count: int) -> list[tuple[list[NewMemory], list[int]]]:
    out = []
    for batch in batches:
        out.append(batch)
        if len(out) == count:
            break
    return out


def embed_all(
    embedder: Embedder, items: Sequence[NewMemory], label: str, cache: Path | None
) -> tuple[np.ndarray, float]:
    """Real embeddings of these memories, made as db.memory makes them (`embedding_texts`, combined),
    with progress; returns them and memories per second (NaN when every text came from the cache,
    which re-runs use to skip the slowest part of the setup)."""
    groups = [embedding_texts(item.text, item.question) for item in items]
    known = _load_cache(cache, embedder.name)
    missing = list(dict.fromkeys(t for group in groups for t in group if t not in known))
    rate = float("nan")
    if missing:
        vectors, texts_per_second = _embed(embedder, missing, label)
        rate = texts_per_second * len(items) / max(1, sum(len(group) for group in groups))
        known.update(zip(missing, vectors, strict=True))
        _save_cache(cache, embedder.name, known)
    else:
        print(f"  {len(items):,} {label}: embeddings from the cache", flush=True)
    if not groups:
        return np.empty((0, embedder.dim), np.float32), rate
    parts = np.stack([known[t] for group in groups for t in group])
    return combine_vectors(parts, [len(group) for group in groups]), rate


def _cache_file(cache: Path, model: str) -> Path:
    return cache / f"embeddings-{hashlib.sha256(model.encode()).hexdigest()[:12]}.npz"


def _load_cache(cache: Path | None, model: str) -> dict[str, np.ndarray]:
    if cache is None or not _cache_file(cache, model).is_file():
        return {}
    with np.load(_cache_file(cache, model)) as data:
        return dict(zip(data["texts"].tolist(), data["vectors"], strict=True))


def _save_cache(cache: Path | None, model: str, known: dict[str, np.ndarray]) -> None:
    if cache is None:
        return
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(_cache_file(cache, model), texts=np.array(list(known)), vectors=np.stack(list(known.values())))


def _embed(embedder: Embedder, texts: Sequence[str], label: str) -> tuple[np.ndarray, float]:
    out = np.empty((len(texts), embedder.dim), np.float32)
    started, step = time.perf_counter(), 4_096
    for start in range(0, len(texts), step):
        out[start : start + step] = embedder.embed(texts[start : start + step], batch_size=128)
        done = min(start + step, len(texts))
        print(
            f"  embedded {done:>7,} / {len(texts):,} {label}   {done / (time.perf_counter() - started):,.0f} texts/s",
            flush=True,
        )
    return out, len(texts) / max(1e-9, time.perf_counter() - started)
