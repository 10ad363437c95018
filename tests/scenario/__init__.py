"""Ember as a team meets it: a running bot over real HTTP (or Socket Mode) against the Slack stand-in."""
