"""The ``generatedLinks`` entries of a Site's status, read without any I/O.

Each entry is one link generated at the site (``skupper link generate``; written by
``controller.generated_links``): ``name``, ``serial`` (hex), ``expires``, ``time``,
``revoked`` once revoked, and ``remoteSiteId``/``remoteSiteName`` once a site linked
with it. Here, so the CLI's tables and the daemon read them without loading what issues
certificates.
"""

from __future__ import annotations

from typing import Any

from skupper.resources.model import Resource

GENERATED_LINKS = "generatedLinks"


def generated_links(site: Resource | None) -> list[dict[str, Any]]:
    """The site's generated links, as its status records them (well-formed entries only).

    The entries are the status's own dicts, so a status change may edit them in place.
    """
    entries = ((site or {}).get("status") or {}).get(GENERATED_LINKS) or []
    return [e for e in entries if isinstance(e, dict) and e.get("name") and e.get("serial")]


def live_entry(entries: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    """The entry of ``name`` that is not revoked (a revoked name may be generated again)."""
    return next((e for e in entries if e["name"] == name and not e.get("revoked")), None)
