"""Ember's console: its own INFO lines, and the libraries' chatter only at DEBUG.

transformers' continuous batching logs half a dozen INFO lines per engine start and stop through a
logger of its own ("ContinuousBatchingLogger") with its own handler, and model loading draws
progress bars. Neither says anything an operator acts on, so below DEBUG they are kept out of the
console: the batching records are passed on as DEBUG records, the bars are turned off.
"""

from __future__ import annotations

import logging
import os
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
BATCHING_LOGGER = "ContinuousBatchingLogger"
# Where the demoted records go: a name under the root logger, so Ember's handler and level apply.
DEMOTED_TO = "transformers.batching"


class _Demote(logging.Handler):
    """Hands a library's records on to `DEMOTED_TO`, INFO and below as DEBUG."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno <= logging.INFO:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        target = logging.getLogger(DEMOTED_TO)
        if target.isEnabledFor(record.levelno):
            target.handle(record)


def configure(level: str) -> None:
    """Set up logging once, before any model is loaded (the switches below are read at import)."""
    logging.basicConfig(level=level, format=FORMAT, stream=sys.stderr)
    # The batching module adds its own handler only while its logger still propagates.
    batching = logging.getLogger(BATCHING_LOGGER)
    batching.propagate = False
    if not any(isinstance(handler, _Demote) for handler in batching.handlers):
        batching.addHandler(_Demote())
    logging.getLogger(DEMOTED_TO).propagate = True
    if level != "DEBUG":
        logging.getLogger("alembic").setLevel(logging.WARNING)  # "Context impl SQLiteImpl." at every start
        # huggingface_hub reads this when first imported; transformers' loading bars follow it.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
