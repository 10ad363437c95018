"""The load benchmark in its quick mode: a real `ember run` and a bare Bolt app under the same two loads.

Nothing here is timed (shared machines make timings flaky); what is checked is what a reader of the
table checks first: both bots are in it, and every mention got exactly one answer.
"""

from __future__ import annotations

import pytest

from bench import load


def test_the_quick_load_bench_prints_both_bots_and_answers_every_mention_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    results = load.main(["--quick"])
    printed = capsys.readouterr().out

    assert results is not None
    header = next(line for line in printed.splitlines() if "ember (ember run)" in line)
    assert "baseline (bare Bolt)" in header
    assert "goal: ack p99 under 100 ms at 100 at once; memory flat over the sustained run" in printed
    for row in ("ack p50 ms", "ack p99 ms", "ack max ms", "answered exactly once", "sustained run: growth"):
        assert row in printed, row

    for bot in (results.ember, results.baseline):
        for run in (bot.burst, bot.steady):
            assert run.failed == 0, f"{bot.name} {run.name}: {run.failed} of {run.sent} posts not acked with 200"
    assert (results.ember.burst.sent, results.ember.steady.sent) == (20, 25)
    for run in (results.ember.burst, results.ember.steady):
        assert run.answered_once == run.sent, f"{run.name}: {run.answered_once} of {run.sent} answered once"
        assert run.duplicates == 0, f"{run.name}: {run.duplicates} answered more than once"
    assert not [line for line in results.ember.errors if "Traceback" in line], results.ember.errors
