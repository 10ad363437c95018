"""Augmentation: the serving model writes each taught fact in more phrasings, and what it writes is
filtered. Real models: the packaged SmolLM2 (what a team serves by default) and a tiny random one."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from models import augment, loading
from models.dataset import Example

SYSTEM = "You are Ember."
CI = Example("Which host runs our CI builds?", "Our CI builds run on ci-runner-7.ops.lan.", True, "correction", SYSTEM)
MASCOT = Example("What is our team mascot?", "Our team mascot is Bramble the hedgehog.", True, "upvote", SYSTEM)
EXPENSES = Example("Where do I file expenses?", "Tallyho", True, "correction", SYSTEM)
WRONG = Example("Who approves deploys?", "Nobody knows.", False, "downvote", SYSTEM)


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    location = loading.convert_packaged(tmp_path_factory.mktemp("packaged"))
    model, tokenizer, _ = loading.load(loading.ModelSource(str(location), loading.PACKAGED_VERSION), "cpu")
    return model, tokenizer


def test_only_short_new_questions_about_the_same_things_are_kept() -> None:
    about = {"ci", "build", "host"}
    taken = {"which host runs our ci builds"}
    written = [
        "Which host runs our CI builds?",  # the question itself
        "What is the best pizza in town?",  # about something else
        "Where do the CI builds run",  # not a question
        "Question: where do builds run?",  # the prompt's format leaking through
        "Where do the CI builds run?",
        "Which machine hosts our build jobs?",
        "Where do the CI builds run?",  # already kept
    ]
    assert augment.pick_questions(written, about, taken, 5) == [
        "Where do the CI builds run?",
        "Which machine hosts our build jobs?",
    ]
    assert augment.pick_questions(written, about, set(), 1) == ["Which host runs our CI builds?"]


@pytest.mark.slow
def test_the_packaged_model_rephrases_corrections_and_liked_answers(
    packaged: tuple[PreTrainedModel, PreTrainedTokenizerBase],
) -> None:
    model, tokenizer = packaged
    result = augment.augment(model, tokenizer, [CI, MASCOT, EXPENSES, WRONG])

    # A record for each correction and upvote, none for the downvote.
    assert [record.question for record in result.records] == [CI.question, MASCOT.question, EXPENSES.question]
    written = [question for record in result.records for question in record.questions]
    assert len(written) >= 3, result.records
    originals = {CI.question, MASCOT.question, EXPENSES.question}
    for example in result.examples:
        assert example.desirable and example.source == "augmented" and example.system_prompt == SYSTEM
        assert example.question.endswith("?")
    assert not originals & {e.question for e in result.examples if e.completion in (CI.completion, MASCOT.completion)}
    # New questions are taught the answer the team gave (a bare fragment as a sentence that holds it).
    by_question = {record.question: record for record in result.records}
    for example in result.examples:
        source = next(r for r in result.records if example.question in r.questions or example.question == r.question)
        expected = source.sentence or source.answer
        assert example.completion == expected
    sentence = by_question[EXPENSES.question].sentence
    assert sentence is None or "tallyho" in sentence.casefold()
    # What is held back for the gate is never trained on.
    assert not {e.question for e in result.held_back} & {e.question for e in result.examples}
    summary = result.summary()
    assert summary["examples"] == len(result.examples) and summary["from"] == 3
    assert summary["items"][0]["question"] == CI.question


@pytest.mark.slow
def test_held_out_feedback_is_asked_in_new_words_for_the_gate(
    packaged: tuple[PreTrainedModel, PreTrainedTokenizerBase],
) -> None:
    model, tokenizer = packaged
    paraphrases = augment.paraphrase_held_out(model, tokenizer, [CI, WRONG])
    assert paraphrases, "the packaged model wrote no paraphrase of a plain question"
    for example in paraphrases:
        assert example.completion == CI.completion and example.source == "paraphrase" and example.desirable
        assert example.question != CI.question and example.question.endswith("?")


def test_what_a_model_too_small_to_write_produces_is_dropped(tiny_model_dir: Path) -> None:
    model, tokenizer, _ = loading.load(loading.ModelSource(str(tiny_model_dir), "tiny-llama"), "cpu")
    result = augment.augment(model, tokenizer, [CI, EXPENSES])
    # Random weights write noise: whatever passes is a short question; most of it does not.
    assert len(result.records) == 2
    for example in result.examples:
        assert example.question.endswith("?") and 3 <= len(example.question.split()) <= augment.MAX_WORDS
