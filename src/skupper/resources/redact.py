"""Remove secrets from resources before anyone prints them.

Codes and keys are printed only by ``access-token issue``, into the token file.
"""

from __future__ import annotations

import copy

from skupper.resources.model import Resource

REDACTED = "<redacted>"


def redacted(resource: Resource) -> Resource:
    out = copy.deepcopy(resource)
    kind = out.get("kind")
    if kind == "AccessGrant":
        for part in ("spec", "status"):
            section = out.get(part) or {}
            if section.get("code"):
                section["code"] = REDACTED
    elif kind == "AccessToken":
        spec = out.get("spec") or {}
        if spec.get("code"):
            spec["code"] = REDACTED
    return out
