"""The live console's page, script and style sheet (package data, served by daemon.observer)."""
