"""Resource dicts: construction, names and timestamps."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

GROUP = "skupper.io"
VERSION = "v2alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Kinds this project stores. Secrets are kept beside them (store.secrets), not here.
KINDS = ("Site", "AccessGrant", "AccessToken", "Link", "RouterAccess", "Listener", "Connector")

Resource = dict[str, Any]

# The largest link cost anywhere: at `access-token issue --cost`, in a token's linkCost,
# on a Link, and in the routing adverts (a larger cost would be refused by every peer's
# routing table, so a link carrying it would never be used).
MAX_LINK_COST = 1_000_000

# Kubernetes object names: DNS-1123 subdomain, 253 characters at most.
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def valid_name(name: str) -> bool:
    return len(name) <= 253 and bool(_DNS1123.fullmatch(name))


def resource_key(resource: Resource) -> tuple[str, str]:
    """(kind, metadata.name) of a resource a store is asked to write; ValueError if either
    is missing or the name is not a valid one (every store checks this the same way)."""
    kind = resource.get("kind")
    meta = resource.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(kind, str) or not kind:
        raise ValueError("resource has no kind")
    if not isinstance(name, str) or not valid_name(name):
        raise ValueError(f"{kind}: invalid metadata.name {name!r}")
    return kind, name


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def format_rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_resource(kind: str, name: str, spec: dict[str, Any] | None = None) -> Resource:
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": name},
        "spec": dict(spec or {}),
    }


def metadata(resource: Resource) -> dict[str, Any]:
    meta: dict[str, Any] = resource.setdefault("metadata", {})
    return meta


def name_of(resource: Resource) -> str:
    return str(resource["metadata"]["name"])
