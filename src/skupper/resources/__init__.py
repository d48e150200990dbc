"""The skupper.io/v2alpha1 kinds in upstream's shape, as plain dicts; no I/O.

A resource is the dict upstream would serialise (apiVersion, kind, metadata, spec,
status), so the SQLite store, the Kubernetes store and ``-o yaml`` all see one shape.
This package builds them, derives their status, and redacts their secrets.
"""

from skupper.resources.model import (
    API_VERSION,
    GROUP,
    KINDS,
    Resource,
    metadata,
    name_of,
    new_resource,
    now_rfc3339,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "KINDS",
    "Resource",
    "metadata",
    "name_of",
    "new_resource",
    "now_rfc3339",
]
