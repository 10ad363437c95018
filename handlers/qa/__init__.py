"""Slack-free question answering: the QA handler, the agent loop and its tools, recall.

Nothing here imports slack_bolt or slack_sdk (a test checks it): Slack's readers arrive as plain
callables (`types.Readers`), and every answer leaves as typed events for whichever surface shows it.
"""
