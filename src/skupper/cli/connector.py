"""``skupper connector``: offer a local server to listeners anywhere in the network."""

from __future__ import annotations

from skupper.cli.service_commands import Kind, build_group
from skupper.resources.build import DEFAULT_HOSTS

# A local site's servers usually run on the same machine.
CONNECTOR = Kind("Connector", "connector", DEFAULT_HOSTS["Connector"], "hasMatchingListener",
                 "MATCHING-LISTENER")

connector = build_group(CONNECTOR, "Offer a local server to the network (by routing key).")
