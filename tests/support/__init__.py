"""What tests share that is not a fixture: stand-ins for the servers Ember talks to."""
