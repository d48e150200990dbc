"""The ``skupper`` command: one module per command group, loaded only when used.

Command modules import click and little else at import time; stores, certificates,
YAML and asyncio are imported inside the commands that need them, to keep cold start
cheap. Errors are rendered as one line in one place (``main.main``).
"""
