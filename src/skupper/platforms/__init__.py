"""Platforms: where a site's state lives and how its daemon runs.

``local`` (the ``systemd`` platform) keeps state in files and SQLite and runs one
daemon per namespace; ``select`` chooses the platform from flags, environment and
the machine. Must not import cli.
"""
