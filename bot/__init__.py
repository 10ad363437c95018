"""The Ember application: settings, Bolt app assembly, HTTP server, process lifecycle and the `ember` CLI."""
