"""The nightly learning report's text, from TrainingRun and ModelVersion rows in a real SQLite file.

The details are written the way models.train_job writes them (TrainingSet.counts(), the gate's
Verdict.as_dict()), so a change to what a run records shows up here.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from bot.report import latest_report
from db import Database
from db.schema import ModelVersion, TrainingRun
from models.dataset import Example, TrainingSet
from models.evaluation import Figures, gate

WHEN = datetime(2025, 3, 4, 3, 0, tzinfo=UTC)


def _set(desirable: int, undesirable: int, held_out: int) -> TrainingSet:
    examples = [Example(f"q{n}", "a", n < desirable, "upvote") for n in range(desirable + undesirable)]
    return TrainingSet(
        train=examples[held_out:], held_out=examples[:held_out], left_out={"private": 2, "conflicting": 1}
    )


def _store(db: Database, run: TrainingRun, *versions: ModelVersion) -> None:
    with db.session() as session:
        session.add_all([*versions, run])


def _version(
    version: str, status: str, *, parent: str | None = None, metrics: dict[str, Any] | None = None
) -> ModelVersion:
    return ModelVersion(
        version=version,
        path=f"/data/models/versions/{version}",
        parent=parent,
        status=status,
        metrics=json.dumps(metrics) if metrics is not None else None,
        created_at=WHEN,
        activated_at=WHEN if status == "active" else None,
    )


def _run(status: str, detail: object, **fields: Any) -> TrainingRun:
    return TrainingRun(
        status=status,
        base_version="tiny-llama",
        detail=detail if detail is None or isinstance(detail, str) else json.dumps(detail),
        started_at=WHEN,
        finished_at=WHEN,
        **fields,
    )


def test_a_promoted_run_reports_its_data_the_gate_and_the_new_version(db: Database) -> None:
    training_set = _set(desirable=18, undesirable=6, held_out=5)
    verdict = gate(Figures(-1.5, -1.2, -2.0, 0.8), Figures(-1.1, -1.25, -2.01, 0.8))
    assert verdict.promote
    detail = {
        "data": training_set.counts(),
        "train": {"steps": 40, "seconds": 52.3, "device": "cpu"},
        "gate": verdict.as_dict(),
        "seconds": 63.4,
    }
    run = _run("promoted", detail, candidate_version="tiny-llama-ft1", examples=24, desirable=18, undesirable=6)
    run.loss = 0.4321
    _store(
        db,
        run,
        _version("tiny-llama", "retired"),
        _version("tiny-llama-ft1", "active", parent="tiny-llama", metrics=verdict.as_dict()),
    )

    report = latest_report(db, serving="tiny-llama-ft1")

    assert report is not None
    text = report.text
    assert text.splitlines()[0] == "*Training run 1: promoted* `tiny-llama-ft1`"
    assert "24 examples (18 desirable, 6 undesirable)" in text
    assert "19 to train on, 5 held out for the gate" in text
    assert "*Left out:* 2 from private conversations, 1 with votes that cancel out" in text
    assert "*Eval gate:* promote – better on every check" in text
    assert "• held-out liked answers and corrections: -1.500 → -1.100 (passed)" in text
    assert "• held-out disliked answers: -1.200 → -1.250 (passed)" in text
    assert "• general reference answers: -2.000 → -2.010\n" in text
    assert "• general questions answered right: 80% → 80% (passed)" in text
    assert "*Training:* loss 0.4321, 40 steps, on cpu, 63 s in all" in text
    assert text.splitlines()[-1] == "*Now serving:* `tiny-llama-ft1`"


def test_a_run_that_augmented_says_what_it_wrote_and_how_taught_facts_fare_in_new_words(db: Database) -> None:
    verdict = gate(Figures(-1.5, None, -2.0, 0.8, paraphrased=-3.0), Figures(-1.1, None, -2.0, 0.8, paraphrased=-1.0))
    augmentation = {
        "enabled": True,
        "examples": 5,
        "from": 2,
        "items": [
            {"question": "Where is the VPN?", "answer": "vpn.acme.internal", "questions": ["How do I reach the VPN?"]}
        ],
    }
    detail = {"data": _set(4, 0, 1).counts(), "gate": verdict.as_dict(), "augmentation": augmentation}
    _store(db, _run("promoted", detail, candidate_version="tiny-llama-ft1"), _version("tiny-llama-ft1", "active"))

    report = latest_report(db)

    assert report is not None
    said = "*In more words:* 2 answers rephrased into 5 more examples"
    assert f"{said}, e.g. “Where is the VPN?” also as “How do I reach the VPN?”" in report.text
    assert "• taught facts asked in new words: -3.000 → -1.000 (passed)" in report.text


def test_a_run_whose_rephrasing_failed_says_so(db: Database) -> None:
    verdict = gate(Figures(-1.5, None, -2.0, 0.8), Figures(-1.1, None, -2.0, 0.8))
    detail = {"gate": verdict.as_dict(), "augmentation": {"enabled": True, "error": "RuntimeError: out of memory"}}
    _store(db, _run("promoted", detail, candidate_version="tiny-llama-ft1"), _version("tiny-llama-ft1", "active"))

    report = latest_report(db)

    assert report is not None
    assert "*In more words:* skipped, the rephrasing failed (RuntimeError: out of memory)" in report.text
    assert "taught facts asked in new words" not in report.text


def test_a_rejected_run_names_the_failed_checks_and_the_version_still_serving(db: Database) -> None:
    verdict = gate(Figures(-1.5, None, -2.0, 0.8), Figures(-1.6, None, -2.3, 0.4))
    assert not verdict.promote
    detail = {"data": _set(desirable=20, undesirable=0, held_out=4).counts(), "gate": verdict.as_dict()}
    _store(
        db,
        _run("rejected", detail, candidate_version="tiny-llama-ft1", examples=20, desirable=20),
        _version("tiny-llama", "active"),
        _version("tiny-llama-ft1", "rejected", parent="tiny-llama", metrics=verdict.as_dict()),
    )

    report = latest_report(db, serving="tiny-llama")

    assert report is not None
    text = report.text
    assert text.startswith("*Training run 1: rejected* `tiny-llama-ft1`")
    assert "*Eval gate:* reject – failed: desirable_improved, general_answers_kept" in text
    assert "• held-out liked answers and corrections: -1.500 → -1.600 (failed)" in text
    assert "• held-out disliked answers: n/a → n/a (not checked)" in text
    assert "• general questions answered right: 80% → 40% (failed)" in text
    assert "*Training:* loss not recorded" in text
    assert text.splitlines()[-1] == "*Now serving:* `tiny-llama`"


def test_a_record_missing_its_fields_still_reads(db: Database) -> None:
    # An older record: no detail at all; the gate's figures are only on the candidate's registry row.
    metrics = gate(Figures(-1.5, None, -2.0, 0.8), Figures(-1.0, None, -2.0, 0.8)).as_dict()
    _store(
        db,
        _run("promoted", None, candidate_version="tiny-llama-ft1", examples=30, desirable=25, undesirable=5),
        _version("tiny-llama", "retired"),
        _version("tiny-llama-ft1", "active", parent="tiny-llama", metrics=metrics),
    )

    report = latest_report(db)

    assert report is not None
    assert "*Training data:* 30 examples (25 desirable, 5 undesirable)" in report.text
    assert "• held-out liked answers and corrections: -1.500 → -1.000 (passed)" in report.text
    assert report.text.splitlines()[-1] == "*Now serving:* `tiny-llama-ft1`"


def test_broken_or_partial_details_give_a_readable_report(db: Database) -> None:
    cases = [
        (_run("skipped", "{not json"), "*Training run 1: skipped* (no reason recorded)"),
        (_run("failed", {"data": {"examples": "many"}}), "*Training run 2: failed*: no error recorded"),
        (_run("failed", {"error": "RuntimeError: <oom> & more"}), "failed*: RuntimeError: &lt;oom&gt; &amp; more"),
        (_run("rejected", {"gate": {"checks": {}}}), "*Eval gate:* no decision recorded"),
        (_run("rejected", ["a", "list"]), "*Eval gate:* no figures recorded"),
    ]
    with db.session() as session:
        session.add(_version("tiny-llama", "active"))
    for run, expected in cases:
        _store(db, run)
        report = latest_report(db, serving="tiny-llama")
        assert report is not None
        assert expected in report.text, report.text
        assert "*Training data:* 0 examples (0 desirable, 0 undesirable)" in report.text
        assert report.text.endswith("*Now serving:* `tiny-llama`")


def test_counts_by_source_are_listed_when_a_run_records_them(db: Database) -> None:
    data = {"examples": 7, "desirable": 5, "undesirable": 2, "sources": {"upvote": 3, "correction": 2, "downvote": 2}}
    _store(db, _run("skipped", {"data": data, "reason": "7 examples, fewer than the minimum of 20"}))

    report = latest_report(db, serving="tiny-llama")

    assert report is not None
    assert "7 examples (5 desirable, 2 undesirable); 3 upvote, 2 correction, 2 downvote" in report.text
    assert report.text.startswith("*Training run 1: skipped* (7 examples, fewer than the minimum of 20)")
    assert report.text.endswith("*Now serving:* `tiny-llama`")


def test_a_run_still_running_or_no_run_yet_is_not_reported(db: Database) -> None:
    assert latest_report(db) is None
    _store(db, _run("running", None))
    assert latest_report(db) is None


def test_a_version_served_other_than_the_registry_says_is_named(db: Database) -> None:
    _store(db, _run("skipped", {"reason": "no feedback"}), _version("tiny-llama-ft9", "active", parent="tiny-llama"))

    report = latest_report(db, serving="tiny-llama")

    assert report is not None
    assert report.text.endswith("*Now serving:* `tiny-llama` (the registry's active version is `tiny-llama-ft9`)")
