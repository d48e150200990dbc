"""Facts about a Site resource that the CLI and the controller both need; no I/O."""

from __future__ import annotations

from skupper.resources.model import Resource

# The conditions that make a Site Ready.
SITE_REQUIRED = ("Configured", "Running", "Resolved")

# spec.settings key: the name or address remote sites use to reach this site.
LINK_ACCESS_HOST_SETTING = "link-access-host"


def link_access_enabled(site: Resource) -> bool:
    return str(site.get("spec", {}).get("linkAccess") or "none") != "none"
