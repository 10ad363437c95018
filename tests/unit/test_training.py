"""The nightly fine-tune end to end: feedback in a real SQLite file, real LoRA + KTO steps on a tiny real
model, the eval gate, the registry, and a training process killed half-way."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from db import Database
from db.schema import Memory, ModelVersion, TrainingRun, Vote
from models import dataset, evaluation, registry, train_job
from models.dataset import TrainingSet
from models.evaluation import Figures, gate, plain_figures
from models.loading import ModelSource, load
from tests.support.planted import FACT, HELD, POOL, QUICK, TRAINED, UNKNOWN, Feedback, add_feedback, planted_fact

SYSTEM = "You are Ember."
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture()
def database(data_dir: Path, tiny_model_dir: Path) -> Iterator[Database]:
    data_dir.mkdir()
    db = Database(f"sqlite:///{data_dir / 'ember.db'}")
    db.upgrade()
    with db.session() as session:  # the bot registers its base at start
        registry.ensure_base(session, base=ModelSource(str(tiny_model_dir), tiny_model_dir.name))
    yield db
    db.close()


def job(data_dir: Path, database: Database, model: Path, **changes: object) -> train_job.JobConfig:
    config = train_job.JobConfig(
        data_dir=data_dir,
        database_url=database.url,
        system_prompt=SYSTEM,
        model=str(model),
        device="cpu",
        min_examples=8,
        train=QUICK,
        progress=False,
    )
    return dataclasses.replace(config, **changes)  # type: ignore[arg-type]


def snapshot(database: Database, data_dir: Path) -> tuple[object, ...]:
    """Everything that serves or is stored: version directories, registry rows, votes, memories."""
    versions = registry.versions_dir(data_dir)
    with database.session() as session:
        rows = [(r.version, r.path, r.status, r.metrics) for r in session.scalars(select(ModelVersion))]
        votes = [(v.turn_id, v.user_id, v.value, v.correction) for v in session.scalars(select(Vote))]
        memories = [(m.id, m.text) for m in session.scalars(select(Memory))]
    files = sorted(str(p.relative_to(data_dir)) for p in versions.rglob("*")) if versions.exists() else []
    return files, rows, votes, memories


def runs(database: Database) -> list[TrainingRun]:
    with database.session() as session:
        return list(session.scalars(select(TrainingRun).order_by(TrainingRun.id)))


# --- the training set ------------------------------------------------------------------------


def build(database: Database, **options: object) -> TrainingSet:
    with database.session() as session:
        return dataset.build(session, system_prompt=SYSTEM, **options)  # type: ignore[arg-type]


def test_votes_and_corrections_become_labelled_examples(database: Database) -> None:
    add_feedback(
        database,
        [
            Feedback("What is the build host?", UNKNOWN, (-1, -1), "No, it's zephyr-7 (token xoxb-1234567890-abcdef)"),
            Feedback("Capital of France?", "Paris.", (1, 1, -1)),
            Feedback("Capital of France?", "Paris.", (1,)),  # asked again: the same example, counted once
            Feedback("Best editor?", "Vim.", (1, -1)),  # the votes cancel out: left out
        ],
    )
    examples = {(e.question, e.completion): e for e in build(database, holdout_fraction=0.0).examples}
    assert set(examples) == {
        ("What is the build host?", UNKNOWN),
        ("What is the build host?", "It's zephyr-7 (token [redacted])"),  # corrected, redacted, no "No,"
        ("Capital of France?", "Paris."),
    }
    assert not examples[("What is the build host?", UNKNOWN)].desirable
    assert examples[("What is the build host?", "It's zephyr-7 (token [redacted])")].source == "correction"
    assert examples[("Capital of France?", "Paris.")].desirable
    assert examples[("Capital of France?", "Paris.")].prompt() == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "Capital of France?"},
    ]


def test_private_feedback_stays_out_unless_the_team_opts_in(database: Database) -> None:
    add_feedback(
        database,
        [
            Feedback("Public question?", "Public answer.", (1,)),
            Feedback("My salary band?", "L4.", (-1,), "L5, keep it quiet.", channel_type="im"),
            Feedback("Private channel question?", "Private answer.", (1,), channel_type="group"),
        ],
    )
    public = build(database)
    assert [e.question for e in public.examples] == ["Public question?"]
    assert public.left_out["private"] == 3  # two voted turns, one remembered correction
    everything = build(database, include_private=True)
    assert {e.question for e in everything.examples} == {
        "Public question?",
        "My salary band?",
        "Private channel question?",
    }


def test_the_held_out_slice_is_chosen_by_question_and_stable(database: Database) -> None:
    add_feedback(database, planted_fact(POOL))
    first, second = build(database), build(database)
    assert [e.question for e in first.held_out] == [e.question for e in second.held_out]
    held = {e.question for e in first.held_out}
    assert held and held.isdisjoint(e.question for e in first.train)
    assert held == {q for q in POOL if dataset.held_out(q)}


def test_too_little_feedback_skips_the_run(database: Database, data_dir: Path, tiny_model_dir: Path) -> None:
    add_feedback(database, planted_fact(TRAINED[:3]))
    before = snapshot(database, data_dir)
    outcome = train_job.run(job(data_dir, database, tiny_model_dir, min_examples=20))
    assert (outcome.status, outcome.exit_code) == ("skipped", 0)
    assert "fewer than the minimum of 20" in outcome.summary
    (record,) = runs(database)
    assert (record.status, record.examples, record.desirable, record.undesirable) == ("skipped", 6, 3, 3)
    assert snapshot(database, data_dir) == before


def test_a_second_run_waits_for_the_first(database: Database, data_dir: Path, tiny_model_dir: Path) -> None:
    with train_job._lock(data_dir) as held:
        assert held
        outcome = train_job.run(job(data_dir, database, tiny_model_dir))
    assert (outcome.status, outcome.exit_code) == ("busy", train_job.EXIT_BUSY)
    assert runs(database) == []


def test_the_gate_wants_better_desirable_no_better_undesirable_and_general_answers_kept() -> None:
    active = Figures(desirable=-2.0, undesirable=-3.0, general=-1.0, general_accuracy=0.6)
    assert gate(active, Figures(-1.5, -3.5, -1.02, 0.6)).promote
    assert gate(active, Figures(-1.5, -3.5, -1.5, 0.6)).promote  # reference phrasings less likely, answers right
    assert gate(active, Figures(-1.5, None, -1.0, 0.6)).promote  # nothing voted down held out: not judged
    for worse, check in [
        (Figures(-1.995, -3.5, -1.0, 0.6), "desirable_improved"),  # within noise is not better
        (Figures(-1.5, -2.9, -1.0, 0.6), "undesirable_not_improved"),
        (Figures(-1.5, -3.5, -0.9, 0.5), "general_answers_kept"),  # likelier references, fewer right answers
    ]:
        verdict = gate(active, worse)
        assert not verdict.promote and verdict.checks[check] is False, (worse, verdict.reason)
        assert check in verdict.reason
    assert not gate(Figures(None, -3.0, -1.0, 0.6), Figures(-1.0, -3.0, -1.0, 0.6)).promote


def test_the_gate_also_wants_taught_facts_likelier_in_words_never_trained_on() -> None:
    active = Figures(-2.0, None, -1.0, 0.6, paraphrased=-3.0)
    assert gate(active, Figures(-1.5, None, -1.0, 0.6, paraphrased=-1.0)).promote
    # Held-out feedback likelier, but the taught facts asked in new words are not: memorised, not learned.
    verdict = gate(active, Figures(-1.5, None, -1.0, 0.6, paraphrased=-3.0))
    assert not verdict.promote and verdict.checks["paraphrased_improved"] is False
    # One correction per fact: the held-out corrections are facts the run never saw, and they fall
    # while the taught facts in new words rise. Users meet the latter; the former does not decide.
    verdict = gate(active, Figures(-2.3, None, -1.0, 0.6, paraphrased=-0.5))
    assert verdict.promote and verdict.checks["desirable_improved"] is False, verdict.reason
    assert any("held-out liked" in line and "not judged" in line for line in plain_figures(verdict.as_dict()))
    # No paraphrase written (augmentation off, or nothing passed its filter): not judged.
    assert gate(Figures(-2.0, None, -1.0, 0.6), Figures(-1.5, None, -1.0, 0.6)).checks["paraphrased_improved"] is None


# --- real training runs ----------------------------------------------------------------------


def test_a_run_that_learns_the_planted_fact_is_promoted(
    database: Database, data_dir: Path, tiny_model_dir: Path
) -> None:
    add_feedback(database, planted_fact([*TRAINED, *HELD]))
    outcome = train_job.run(job(data_dir, database, tiny_model_dir))
    assert (outcome.status, outcome.exit_code) == ("promoted", 0), outcome.summary
    assert outcome.version == f"tiny-llama-ft{outcome.run_id}"

    with database.session() as session:
        active = registry.active(session)
    assert active is not None and active.version == outcome.version and active.parent == "tiny-llama"
    gate = active.metrics
    assert gate["promote"] and gate["candidate"]["desirable"] > gate["active"]["desirable"]
    assert gate["candidate"]["undesirable"] <= gate["active"]["undesirable"]

    path = Path(active.path)
    assert path == registry.versions_dir(data_dir) / outcome.version
    metadata = registry.read_metadata(path)
    assert metadata["base"] == "tiny-llama" and metadata["gate"]["promote"]
    adapter = json.loads((path / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 16 and adapter["base_model_name_or_path"] == str(tiny_model_dir)
    model, _, _ = load(ModelSource(str(path), outcome.version), "cpu")  # what Engine.swap does
    assert model.config.vocab_size > 0
    assert not registry.staging_dir(data_dir).exists() or not any(registry.staging_dir(data_dir).iterdir())

    (record,) = runs(database)
    assert (record.status, record.candidate_version, record.base_version) == ("promoted", outcome.version, "tiny-llama")
    assert (record.examples, record.desirable, record.undesirable) == (20, 10, 10)
    assert record.loss is not None and record.finished_at is not None
    detail = json.loads(record.detail or "{}")
    assert detail["data"]["held_out"] == 4 and detail["train"]["steps"] >= 4 and detail["seconds"] > 0
    assert detail["settings"]["sft_weight"] > 0 and detail["gate"]["checks"]["general_answers_kept"]


def test_a_candidate_that_measures_worse_is_rejected(database: Database, data_dir: Path, tiny_model_dir: Path) -> None:
    # The team contradicts itself: in the questions trained on it says the fact is wrong, in the
    # held-out ones that it is right. The candidate learns the former; the gate judges by the latter.
    contradicted = [Feedback(q, FACT, (-1,), UNKNOWN) for q in TRAINED]
    add_feedback(database, [*contradicted, *planted_fact(HELD)])
    outcome = train_job.run(job(data_dir, database, tiny_model_dir))
    assert (outcome.status, outcome.exit_code) == ("rejected", 0), outcome.summary

    with database.session() as session:
        active = registry.active(session)
        candidate = registry.get(session, version=outcome.version or "")
    assert active is not None and active.version == "tiny-llama"
    assert candidate is not None and candidate.status == "rejected"
    gate = candidate.metrics
    assert not gate["promote"] and not gate["checks"]["desirable_improved"]
    assert gate["candidate"]["desirable"] < gate["active"]["desirable"]
    assert Path(candidate.path).is_dir(), "a rejected version is kept, with its figures"
    assert runs(database)[-1].status == "rejected"


def test_killing_the_training_process_changes_nothing_and_the_next_run_starts_clean(
    database: Database, data_dir: Path, tiny_model_dir: Path
) -> None:
    add_feedback(database, planted_fact([*TRAINED, *HELD]))
    before = snapshot(database, data_dir)
    command = [
        sys.executable, "-m", "models.train_job",
        "--data-dir", str(data_dir), "--database-url", database.url, "--model", str(tiny_model_dir),
        "--device", "cpu", "--system-prompt", SYSTEM, "--min-examples", "8",
        "--epochs", "500", "--learning-rate", "1e-2", "--anchors", "4", "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if "started training" in line:
                break
        assert lines and "started training" in lines[-1], lines
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()

    assert snapshot(database, data_dir) == before
    assert [r.status for r in runs(database)] == ["running"]  # its record says what it was doing

    outcome = train_job.run(job(data_dir, database, tiny_model_dir))
    assert outcome.status in ("promoted", "rejected"), outcome.summary
    killed, clean = runs(database)
    assert killed.status == "failed" and train_job.INTERRUPTED in (killed.detail or "")
    assert clean.status == outcome.status
    assert sorted(p.name for p in registry.versions_dir(data_dir).iterdir()) == [outcome.version]
    assert not any(registry.staging_dir(data_dir).iterdir()) if registry.staging_dir(data_dir).exists() else True


# --- augmentation ------------------------------------------------------------------------------


def test_a_run_keeps_what_augmentation_wrote_in_its_record(
    database: Database, data_dir: Path, tiny_model_dir: Path
) -> None:
    add_feedback(database, planted_fact([*TRAINED, *HELD]))
    out = io.StringIO()
    outcome = train_job.run(job(data_dir, database, tiny_model_dir), out=out)
    assert outcome.status in ("promoted", "rejected"), outcome.summary

    detail = json.loads(runs(database)[-1].detail or "{}")
    augmentation = detail["augmentation"]
    # Every desirable example trained on got a record of what was written for it (a tiny random
    # model writes little that passes as a question, so the lists may be short or empty).
    trained_desirable = TRAINED  # HELD is the gate's side of the split
    assert augmentation["enabled"] and augmentation["from"] == len(trained_desirable)
    assert {item["question"] for item in augmentation["items"]} == set(trained_desirable)
    assert {item["answer"] for item in augmentation["items"]} == {FACT}
    assert f"run {outcome.run_id} augmented {augmentation['from']} examples" in out.getvalue()
    assert registry.read_metadata(registry.versions_dir(data_dir) / (outcome.version or ""))["augmentation"]


def test_a_failing_augmentation_is_skipped_and_the_night_still_trains(
    database: Database, data_dir: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from models import augment

    def broken(*_args: object, **_kwargs: object) -> augment.Augmentation:
        raise RuntimeError("the model wrote nothing usable")

    monkeypatch.setattr(augment, "augment", broken)
    add_feedback(database, planted_fact([*TRAINED, *HELD]))
    out = io.StringIO()
    outcome = train_job.run(job(data_dir, database, tiny_model_dir), out=out)

    assert (outcome.status, outcome.exit_code) == ("promoted", 0), outcome.summary
    assert "augmentation failed (RuntimeError: the model wrote nothing usable)" in out.getvalue()
    detail = json.loads(runs(database)[-1].detail or "{}")
    assert detail["augmentation"]["error"] == "RuntimeError: the model wrote nothing usable"
    assert detail["gate"]["candidate"]["paraphrased"] is None  # nothing held back to judge by


def test_augmentation_can_be_turned_off(database: Database, data_dir: Path, tiny_model_dir: Path) -> None:
    add_feedback(database, planted_fact([*TRAINED, *HELD]))
    outcome = train_job.run(job(data_dir, database, tiny_model_dir, augment=False))
    assert outcome.status == "promoted", outcome.summary
    assert json.loads(runs(database)[-1].detail or "{}")["augmentation"] == {"enabled": False}


def test_anchor_prompts_never_rehearse_a_question_the_model_is_judged_on():
    """Anchors are replayed with the base model's own answers. If one were also a question the gate
    or the learning benchmark asks, training would be graded on what it rehearsed."""
    from bench import learning
    from models.training import ANCHOR_PROMPTS

    def norm(text: str) -> str:
        return " ".join(text.lower().rstrip("?.!").split())

    anchors = [norm(p) for p in ANCHOR_PROMPTS]
    assert len(anchors) == len(set(anchors)), "an anchor prompt is listed twice"
    judged = {norm(q) for q, *_ in evaluation.GENERAL}
    judged |= {norm(q) for q, _ in learning.GENERAL} | {norm(q) for q, _ in learning.DAY_GENERAL}
    judged |= {norm(q) for fact in learning.FACTS for q in (*fact.asked, *fact.paraphrases)}
    assert not set(anchors) & judged
