"""One builder per kind: what ``create`` stores, ``generate`` prints and ``system apply`` fills in.

The create and generate commands turn their flags into these arguments; ``system apply``
fills a document's missing fields with the same defaults, so a Listener written by
``listener generate`` and one written by hand without ``routingKey`` are the same resource.
No I/O and no checks here: callers check the fields (``resources.fields``) first.
"""

from __future__ import annotations

from typing import Any

from skupper.resources.model import Resource, new_resource
from skupper.resources.site import LINK_ACCESS_HOST_SETTING

# Upstream's defaults on non-Kubernetes platforms: clients anywhere at the site may reach a
# listener; a connector's server usually runs on the same machine.
DEFAULT_HOSTS = {"Listener": "0.0.0.0", "Connector": "127.0.0.1"}


def site_resource(name: str, link_access: str | None, link_access_host: str | None) -> Resource:
    spec: dict[str, Any] = {"linkAccess": link_access or "none"}
    if link_access_host:
        spec["settings"] = {LINK_ACCESS_HOST_SETTING: link_access_host}
    return new_resource("Site", name, spec)


def service_resource(kind: str, name: str, port: int, *, routing_key: str | None = None,
                     host: str | None = None, type_: str | None = None) -> Resource:
    """A Listener or Connector; the routing key defaults to the name, as upstream's."""
    spec: dict[str, Any] = {"routingKey": routing_key or name,
                            "host": host or DEFAULT_HOSTS[kind], "port": port}
    if type_:
        spec["type"] = type_
    return new_resource(kind, name, spec)
