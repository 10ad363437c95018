"""Slack listeners (one module per surface) and the Slack-free QA handler they all call.

Importing this package never imports torch: the engine arrives through `Services`.
"""

from handlers.registry import register

__all__ = ["register"]
