"""The Slack surface: Bolt listeners (one module per surface), the one answer writer, streaming and
mrkdwn, and `wiring.register`, which puts them on a Bolt app. Listeners pull who asked what and where
out of the payload (`asks`), hand it to the QA handler and write what comes back (`answering`)."""
