from __future__ import annotations

import pytest
from transformers import PreTrainedTokenizerBase

from models.prompt import PromptTooLong, fit, render

SYSTEM = {"role": "system", "content": "You are Ember."}


def conversation(turns: int) -> list[dict[str, str]]:
    history = []
    for i in range(turns):
        history += [{"role": "user", "content": f"question {i} " * 20}, {"role": "assistant", "content": f"answer {i}"}]
    return [SYSTEM, *history, {"role": "user", "content": "the newest question"}]


def test_a_conversation_that_fits_is_kept_whole(tokenizer: PreTrainedTokenizerBase) -> None:
    messages = conversation(2)
    fitted = fit(tokenizer, messages, budget=10_000)
    assert fitted.input_ids == render(tokenizer, messages)
    assert fitted.dropped_messages == 0 and not fitted.question_cut


def test_oldest_turns_are_dropped_first_and_the_system_prompt_stays(tokenizer: PreTrainedTokenizerBase) -> None:
    messages = conversation(6)
    full = len(render(tokenizer, messages))
    fitted = fit(tokenizer, messages, budget=full - 50)
    text = tokenizer.decode(fitted.input_ids)
    assert len(fitted.input_ids) <= full - 50
    assert fitted.dropped_messages > 0
    assert "You are Ember." in text and "the newest question" in text
    assert "question 0" not in text and "answer 5" in text


def test_a_question_longer_than_the_window_is_cut_not_failed(tokenizer: PreTrainedTokenizerBase) -> None:
    long_question = "Please read this. " * 2_300  # about 40,000 characters
    messages = [SYSTEM, {"role": "user", "content": long_question}]
    fitted = fit(tokenizer, messages, budget=300)
    assert len(fitted.input_ids) <= 300
    assert fitted.question_cut
    assert fitted.question_chars == len(long_question)
    assert 0 < fitted.question_chars_kept < 2_000


def test_a_budget_smaller_than_the_system_prompt_says_so(tokenizer: PreTrainedTokenizerBase) -> None:
    with pytest.raises(PromptTooLong, match="system prompt"):
        fit(tokenizer, [SYSTEM, {"role": "user", "content": "hi"}], budget=3)
