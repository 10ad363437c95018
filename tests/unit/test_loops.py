"""What counts as a loop in generated tokens, and where the answer is cut."""

from __future__ import annotations

from models.loops import has_loop, loop_start


def test_a_phrase_said_three_times_in_a_row_is_a_loop_cut_after_the_first() -> None:
    prefix, unit = [1, 2, 3], [7, 8, 9]
    tokens = prefix + unit * 3
    assert loop_start(tokens) == len(prefix) + len(unit)
    assert has_loop(tokens)


def test_a_one_token_word_loops_only_after_nine_repeats() -> None:
    assert loop_start([5, 6] + [4] * 8) is None
    assert loop_start([5, 6] + [4] * 9) == 3


def test_the_first_unit_of_a_long_run_is_kept() -> None:
    tokens = [1] + [7, 8, 9] * 6
    assert loop_start(tokens) == 4


def test_ordinary_repetition_is_not_a_loop() -> None:
    assert not has_loop([1, 2, 3, 1, 2, 3, 4, 5])  # said twice
    assert not has_loop([9, 9, 9, 1, 2])  # a short run of one token
    assert not has_loop(list(range(200)))
    assert loop_start([]) is None


def test_a_repeat_without_words_is_not_a_loop_when_the_caller_says_what_words_are() -> None:
    digits = {0}  # say token 0 is "0": a long number, not a loop
    zeros = [2] + [0] * 12
    assert loop_start(zeros) is not None
    assert loop_start(zeros, wordy=lambda unit: not set(unit) <= digits) is None
    assert loop_start([2] + [5] * 12, wordy=lambda unit: not set(unit) <= digits) == 2
