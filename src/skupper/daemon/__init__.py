"""The site daemon: the composition root of store, controller, grant server and router.

Only this package wires concrete parts together; it owns process concerns (lock,
pid file, signals, logging). Must not import cli.
"""
