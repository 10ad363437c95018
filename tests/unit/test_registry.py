"""The model version registry on a real SQLite file: one active version, promotion, rollback, restarts."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from db import Database
from models import registry
from models.loading import ModelSource
from models.registry import RegistryError

BASE = ModelSource("/models/base", "base-model")


def open_db(data_dir: Path) -> Database:
    database = Database(f"sqlite:///{data_dir / 'ember.db'}")
    database.upgrade()
    return database


def add_version(database: Database, data_dir: Path, version: str, parent: str, *, promote: bool = True) -> Path:
    """A version directory as a run leaves it (weights are not read by the registry), registered."""
    path = registry.versions_dir(data_dir) / version
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    registry.write_metadata(path, {"version": version, "parent": parent})
    with database.session() as session:
        registry.add_candidate(session, version=version, path=path, parent=parent, metrics={"promote": promote})
        if promote:
            registry.promote(session, version=version)
        else:
            registry.reject(session, version=version)
    return path


def statuses(database: Database) -> dict[str, str]:
    with database.session() as session:
        return {info.version: info.status for info in registry.list_versions(session)}


def test_the_base_is_registered_once_and_active(tmp_path: Path) -> None:
    database = open_db(tmp_path)
    with database.session() as session:
        first = registry.ensure_base(session, base=BASE)
    with database.session() as session:
        again = registry.ensure_base(session, base=BASE)
        listed = registry.list_versions(session)
    assert first.version == again.version == "base-model"
    assert again.status == "active" and again.activated_at is not None
    assert [info.version for info in listed] == ["base-model"]


def test_replicas_starting_at_once_register_the_base_once(db: Database) -> None:
    barrier = threading.Barrier(4)

    def start() -> str:
        barrier.wait()
        with db.session() as session:
            return registry.ensure_base(session, base=BASE).version

    with ThreadPoolExecutor(max_workers=4) as pool:
        served = [future.result() for future in [pool.submit(start) for _ in range(4)]]
    assert served == ["base-model"] * 4
    assert statuses(db) == {"base-model": "active"}


def test_promotion_leaves_exactly_one_active_and_retires_the_previous(tmp_path: Path) -> None:
    database = open_db(tmp_path)
    with database.session() as session:
        registry.ensure_base(session, base=BASE)
    add_version(database, tmp_path, "base-model-ft1", "base-model")
    add_version(database, tmp_path, "base-model-ft2", "base-model-ft1", promote=False)
    assert statuses(database) == {"base-model": "retired", "base-model-ft1": "active", "base-model-ft2": "rejected"}
    with database.session() as session:
        info = registry.get(session, version="base-model-ft2")
        assert info is not None and info.metrics == {"promote": False}
        assert registry.root(session, version="base-model-ft2") == "base-model"
        registry.promote(session, version="base-model-ft2")  # a person may overrule the gate
    assert list(statuses(database).values()).count("active") == 1
    assert statuses(database)["base-model-ft2"] == "active"


def test_a_failed_promotion_changes_nothing(tmp_path: Path) -> None:
    database = open_db(tmp_path)
    with database.session() as session:
        registry.ensure_base(session, base=BASE)
    path = add_version(database, tmp_path, "base-model-ft1", "base-model", promote=False)
    (path / "config.json").unlink()  # its weights are gone
    with pytest.raises(RegistryError, match="no weights"), database.session() as session:
        registry.promote(session, version="base-model-ft1")
    with pytest.raises(RegistryError, match="no version"), database.session() as session:
        registry.promote(session, version="nonesuch")
    assert statuses(database) == {"base-model": "active", "base-model-ft1": "rejected"}


def test_rollback_restores_the_previous_version_and_goes_further_back_each_time(tmp_path: Path) -> None:
    database = open_db(tmp_path)
    with database.session() as session:
        registry.ensure_base(session, base=BASE)
    add_version(database, tmp_path, "base-model-ft1", "base-model")
    add_version(database, tmp_path, "base-model-ft2", "base-model-ft1")

    with database.session() as session:
        assert registry.rollback(session).version == "base-model-ft1"
    assert statuses(database) == {"base-model": "retired", "base-model-ft1": "active", "base-model-ft2": "rejected"}
    with database.session() as session:
        rolled = registry.get(session, version="base-model-ft2")
        assert rolled is not None and "rolled_back_at" in rolled.metrics

    with database.session() as session:
        assert registry.rollback(session).version == "base-model"
    with pytest.raises(RegistryError, match="nothing to roll back to"), database.session() as session:
        registry.rollback(session)
    assert statuses(database)["base-model"] == "active"


def test_the_active_version_survives_a_restart(tmp_path: Path) -> None:
    database = open_db(tmp_path)
    with database.session() as session:
        registry.ensure_base(session, base=BASE)
    path = add_version(database, tmp_path, "base-model-ft1", "base-model")
    database.close()

    reopened = open_db(tmp_path)  # what the bot does at its next start
    with reopened.session() as session:
        source = registry.serving_source(session, base=BASE)
    assert source == ModelSource(str(path), "base-model-ft1")
    with reopened.session() as session:
        assert registry.pending_swap(session, serving="base-model-ft1") is None
        assert registry.pending_swap(session, serving="base-model") == source


def test_the_bot_serves_the_base_when_the_active_weights_are_missing(tmp_path: Path) -> None:
    database = open_db(tmp_path)
    with database.session() as session:
        registry.ensure_base(session, base=BASE)
    path = add_version(database, tmp_path, "base-model-ft1", "base-model")
    (path / "config.json").unlink()
    with database.session() as session:
        assert registry.serving_source(session, base=BASE) == BASE


def test_a_new_base_model_replaces_fine_tunes_of_the_old_one(tmp_path: Path) -> None:
    database = open_db(tmp_path)
    with database.session() as session:
        registry.ensure_base(session, base=BASE)
    add_version(database, tmp_path, "base-model-ft1", "base-model")
    other = ModelSource("/models/other", "other-model")
    with database.session() as session:
        assert registry.serving_source(session, base=other) == other
    assert statuses(database) == {"base-model": "retired", "base-model-ft1": "retired", "other-model": "active"}


def test_version_names_are_safe_directory_names_and_unique(tmp_path: Path) -> None:
    database = open_db(tmp_path)
    with database.session() as session:
        registry.ensure_base(session, base=ModelSource("Qwen/Qwen2.5-1.5B-Instruct", "Qwen/Qwen2.5-1.5B-Instruct"))
        assert (
            registry.version_name(session, base="Qwen/Qwen2.5-1.5B-Instruct", run_id=3)
            == "Qwen-Qwen2.5-1.5B-Instruct-ft3"
        )
    add_version(database, tmp_path, "base-model-ft4", "Qwen/Qwen2.5-1.5B-Instruct")
    with database.session() as session:
        assert registry.version_name(session, base="base-model", run_id=4) == "base-model-ft4.2"


def test_orphans_are_version_directories_no_row_names(tmp_path: Path) -> None:
    database = open_db(tmp_path)
    with database.session() as session:
        registry.ensure_base(session, base=BASE)
    kept = add_version(database, tmp_path, "base-model-ft1", "base-model")
    orphan = registry.versions_dir(tmp_path) / "base-model-ft2"
    orphan.mkdir()
    with database.session() as session:
        assert registry.orphans(session, data_dir=tmp_path) == [orphan]
    assert kept.is_dir()


def test_listing_shows_status_lineage_and_figures(tmp_path: Path) -> None:
    database = open_db(tmp_path)
    with database.session() as session:
        registry.ensure_base(session, base=BASE)
        path = registry.versions_dir(tmp_path) / "base-model-ft1"
        path.mkdir(parents=True)
        (path / "config.json").write_text("{}")
        figures = {
            "desirable": -2.0,
            "undesirable": -3.0,
            "general": -1.5,
            "general_accuracy": 0.5,
            "paraphrased": -3.5,
        }
        better = {
            "desirable": -1.0,
            "undesirable": -4.0,
            "general": -1.52,
            "general_accuracy": 0.45,
            "paraphrased": -1.2,
        }
        checks = {"paraphrased_improved": True, "desirable_improved": True, "general_answers_kept": True}
        registry.add_candidate(
            session,
            version="base-model-ft1",
            path=path,
            parent="base-model",
            metrics={"active": figures, "candidate": better, "checks": checks},
        )
        registry.promote(session, version="base-model-ft1")
        table = registry.format_versions(registry.list_versions(session))
    lines = table.splitlines()
    assert lines[1].split()[:3] == ["base-model-ft1", "active", "base-model"]
    # The gate's figures in words: what people will meet first, a taught fact asked in new words.
    assert "taught facts asked in new words: -3.50 -> -1.20, likelier" in lines[1]
    assert "held-out liked answers and corrections: -2.00 -> -1.00, likelier" in lines[1]
    assert "general questions answered right: 50% -> 45%, kept" in lines[1]
    assert lines[2].split()[:2] == ["base-model", "retired"]
    assert json.loads((path / "config.json").read_text()) == {}


def test_importing_the_registry_and_dataset_does_not_import_torch() -> None:
    code = "import sys, models.registry, models.dataset, models.train_job; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
