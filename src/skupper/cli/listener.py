"""``skupper listener``: local endpoints for services offered by connectors elsewhere."""

from __future__ import annotations

from skupper.cli.service_commands import Kind, build_group
from skupper.resources.build import DEFAULT_HOSTS

# Upstream's default on non-Kubernetes platforms: clients anywhere at the site may connect.
LISTENER = Kind("Listener", "listener", DEFAULT_HOSTS["Listener"], "hasMatchingConnector",
                "MATCHING-CONNECTOR")

listener = build_group(LISTENER, "Bind a local port to a service in the network (by routing key).")
