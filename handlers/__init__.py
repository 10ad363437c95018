"""The QA/agent handler and the Slack surface that calls it, as two layers (see the design page):

- `handlers.qa`: Slack-free. Questions and answers, the QA handler, the agent loop and its tools,
  recall. `ember ask` and `ember chat` run it in a terminal.
- `handlers.slack`: thin Bolt listeners, the one answer writer, streaming and mrkdwn, their wiring.

Importing this package imports nothing: each layer is imported by name where it is used.
"""
