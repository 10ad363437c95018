"""Tests of one part at a time, each with real dependencies: SQLite files, tiny models, the Slack stand-in."""
