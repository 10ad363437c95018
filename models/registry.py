"""The model version registry: which weights exist, which one serves, and how they got there.

A version is a row in `model_versions` plus, for a fine-tune, a directory
`<data_dir>/models/versions/<version>/` holding merged full weights (what the engine loads), the LoRA
adapter in `adapter/` (what vLLM loads at runtime) and `ember-version.json` (lineage, training
settings and the eval gate's figures). The base model is a version too: the root of every lineage.

Exactly one version is active. It is what the bot loads at start (`serving_source`) and swaps to
when the active row changes (`pending_swap`). Status changes happen inside the caller's transaction
with bulk UPDATEs, so a promotion flips both rows or neither, even with another process promoting at
the same moment (the database serialises the writers).

No torch here: the CLI lists and promotes versions without loading a model.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.schema import ModelVersion, utcnow
from models.evaluation import plain_figures
from models.loading import ModelSource

log = logging.getLogger(__name__)

METADATA = "ember-version.json"
ADAPTER = "adapter"
CANDIDATE, ACTIVE, REJECTED, RETIRED = "candidate", "active", "rejected", "retired"


class RegistryError(Exception):
    """A registry operation cannot be done; the message says why."""


@dataclass(frozen=True)
class VersionInfo:
    version: str
    path: str
    parent: str | None
    status: str
    metrics: dict[str, Any]
    created_at: datetime | None
    activated_at: datetime | None

    @property
    def source(self) -> ModelSource:
        return ModelSource(self.path, self.version)

    @classmethod
    def of(cls, row: ModelVersion) -> VersionInfo:
        metrics = json.loads(row.metrics) if row.metrics else {}
        return cls(row.version, row.path, row.parent, row.status, metrics, row.created_at, row.activated_at)


def versions_dir(data_dir: Path) -> Path:
    return data_dir / "models" / "versions"


def staging_dir(data_dir: Path) -> Path:
    """Where a run writes until it is done; on the same filesystem as versions/, so the move is a rename."""
    return data_dir / "models" / "staging"


# --- reading ----------------------------------------------------------------------------------


def active(session: Session) -> VersionInfo | None:
    row = session.scalars(select(ModelVersion).where(ModelVersion.status == ACTIVE).order_by(ModelVersion.id)).first()
    return VersionInfo.of(row) if row is not None else None


def get(session: Session, *, version: str) -> VersionInfo | None:
    row = _row(session, version)
    return VersionInfo.of(row) if row is not None else None


def list_versions(session: Session) -> list[VersionInfo]:
    """Every version, newest first."""
    rows = session.scalars(select(ModelVersion).order_by(ModelVersion.id.desc()))
    return [VersionInfo.of(row) for row in rows]


def root(session: Session, *, version: str) -> str:
    """The base model a version descends from (the end of its parent chain)."""
    seen: set[str] = set()
    current = version
    while current not in seen:
        seen.add(current)
        row = _row(session, current)
        if row is None or row.parent is None:
            return current
        current = row.parent
    raise RegistryError(f"the parent chain of {version} loops back on itself")


# --- the bot's side ---------------------------------------------------------------------------


def ensure_base(session: Session, *, base: ModelSource) -> VersionInfo:
    """Register the configured base model and return the active version.

    The active version stays if it descends from this base. If EMBER_MODEL now names a different
    base, fine-tunes of the old one no longer apply: the new base becomes active.
    """
    row = _row(session, base.version) or _add_base(session, base)
    if row.path != base.location:
        row.path = base.location  # the packaged model's cache moves with the data directory
    current = active(session)
    if current is None or root(session, version=current.version) != base.version:
        if current is not None:
            log.warning(
                "EMBER_MODEL is now %s; %s (a fine-tune of another base) is retired", base.version, current.version
            )
        return promote(session, version=base.version)
    return current


def _add_base(session: Session, base: ModelSource) -> ModelVersion:
    row = ModelVersion(version=base.version, path=base.location, parent=None, status=RETIRED, created_at=utcnow())
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        # Another replica starting at the same moment registered it first.
        found = _row(session, base.version)
        assert found is not None, "the unique index said this version exists"
        return found
    return row


def serving_source(session: Session, *, base: ModelSource) -> ModelSource:
    """What the bot should load at start: the active version, or the base if its weights are gone."""
    current = ensure_base(session, base=base)
    if current.version != base.version and not Path(current.path, "config.json").is_file():
        log.error(
            "the active version %s has no weights at %s; serving the base %s",
            current.version,
            current.path,
            base.version,
        )
        return base
    return current.source


def pending_swap(session: Session, *, serving: str) -> ModelSource | None:
    """The active version when it is not the one being served (promoted by a run or `ember models`)."""
    current = active(session)
    if current is None or current.version == serving:
        return None
    return current.source


# --- changing status --------------------------------------------------------------------------


def add_candidate(
    session: Session, *, version: str, path: Path, parent: str | None, metrics: dict[str, Any] | None = None
) -> VersionInfo:
    if _row(session, version) is not None:
        raise RegistryError(f"version {version} already exists")
    row = ModelVersion(
        version=version,
        path=str(path.resolve()),  # the bot may start from another working directory
        parent=parent,
        status=CANDIDATE,
        metrics=json.dumps(metrics) if metrics is not None else None,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return VersionInfo.of(row)


def promote(session: Session, *, version: str) -> VersionInfo:
    """Make `version` the active one; the version it replaces is retired. One transaction, both rows."""
    row = _row(session, version)
    if row is None:
        raise RegistryError(f"no version {version}; `ember models list` shows them")
    if row.parent is not None and not Path(row.path, "config.json").is_file():
        raise RegistryError(f"version {version} has no weights at {row.path}")
    # Bulk UPDATEs rather than read-modify-write: a concurrent promotion cannot leave two actives.
    session.execute(
        update(ModelVersion)
        .where(ModelVersion.status == ACTIVE, ModelVersion.version != version)
        .values(status=RETIRED)
    )
    session.execute(
        update(ModelVersion).where(ModelVersion.version == version).values(status=ACTIVE, activated_at=utcnow())
    )
    session.expire_all()
    promoted = get(session, version=version)
    assert promoted is not None
    return promoted


def reject(session: Session, *, version: str, metrics: dict[str, Any] | None = None) -> VersionInfo:
    row = _row(session, version)
    if row is None:
        raise RegistryError(f"no version {version}")
    if row.status == ACTIVE:
        raise RegistryError(f"{version} is active; roll back or promote another version first")
    row.status = REJECTED
    if metrics is not None:
        row.metrics = json.dumps(metrics)
    session.flush()
    return VersionInfo.of(row)


def rollback(session: Session) -> VersionInfo:
    """Re-activate the version that was active before the current one.

    The current one is marked rejected (a person judged it worse), so rolling back again goes one
    further back instead of returning to it; `promote` can still bring it back explicitly.
    """
    current = active(session)
    if current is None:
        raise RegistryError("no version is active")
    previous = session.scalars(
        select(ModelVersion)
        .where(ModelVersion.status == RETIRED, ModelVersion.activated_at.is_not(None))
        .order_by(ModelVersion.activated_at.desc(), ModelVersion.id.desc())
    ).first()
    if previous is None:
        raise RegistryError(f"{current.version} is the only version that has served; nothing to roll back to")
    restored = promote(session, version=previous.version)
    row = _row(session, current.version)
    assert row is not None
    row.status = REJECTED
    row.metrics = json.dumps({**current.metrics, "rolled_back_at": utcnow().isoformat()})
    session.flush()
    return restored


# --- directories ------------------------------------------------------------------------------


def version_name(session: Session, *, base: str, run_id: int) -> str:
    """`<base>-ft<run>`: readable in every turn's model_version, unique across runs."""
    stem = f"{re.sub(r'[^A-Za-z0-9._-]+', '-', base).strip('-.') or 'model'}-ft{run_id}"
    name, n = stem, 1
    while _row(session, name) is not None:
        n += 1
        name = f"{stem}.{n}"
    return name


def write_metadata(directory: Path, metadata: dict[str, Any]) -> None:
    (directory / METADATA).write_text(json.dumps(metadata, indent=2, sort_keys=True, default=str) + "\n")


def read_metadata(directory: Path) -> dict[str, Any]:
    path = directory / METADATA
    return json.loads(path.read_text()) if path.is_file() else {}


def orphans(session: Session, *, data_dir: Path) -> list[Path]:
    """Directories in versions/ that no row names: a run killed between its rename and its commit."""
    directory = versions_dir(data_dir)
    if not directory.is_dir():
        return []
    known = {Path(path).resolve() for path in session.scalars(select(ModelVersion.path))}
    return [child for child in sorted(directory.iterdir()) if child.is_dir() and child.resolve() not in known]


def format_versions(versions: list[VersionInfo]) -> str:
    """`ember models list`: one line per version, newest first, with the gate's headline figures."""
    lines = [f"{'VERSION':<40} {'STATUS':<10} {'PARENT':<32} {'CREATED':<20} FIGURES"]
    for info in versions:
        created = info.created_at.strftime("%Y-%m-%d %H:%M") if info.created_at else ""
        lines.append(f"{info.version:<40} {info.status:<10} {info.parent or '-':<32} {created:<20} {_headline(info)}")
    return "\n".join(lines)


def _headline(info: VersionInfo) -> str:
    parts = plain_figures(info.metrics)
    if "rolled_back_at" in info.metrics:
        parts.append("rolled back")
    return "; ".join(parts)


def _row(session: Session, version: str) -> ModelVersion | None:
    return session.scalars(select(ModelVersion).where(ModelVersion.version == version)).first()
