"""One Store interface for resources and secrets, with a backend per platform.

The local platform keeps resources in SQLite (``store.sqlite``); the Kubernetes
platform keeps them in the API server. Controllers and the CLI see only
``store.interface``. This package must not import certs, grants, router or cli.
"""
