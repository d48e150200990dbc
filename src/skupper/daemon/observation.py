"""The site's observer, wired to the live parts of a running site.

Builds what ``daemon.observer`` serves from the link manager (the network this site
knows, its links' figures), the bridge (connection records and counters) and the grant
server's tally, and keeps the server where the site's settings want it:

- ``metrics-host`` (Site setting; else ``SKUPPER_METRICS_HOST``; else 127.0.0.1): the
  address the observer binds;
- ``metrics-port`` (Site setting): its port; else the first free at or above 9464,
  remembered in ``observer.json`` so the console's address survives restarts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from skupper.base.net import bind_first_free
from skupper.daemon.links import LinkManager
from skupper.daemon.metrics import MetricSources, make_registry
from skupper.daemon.observer import DEFAULT_PORT, Observer, console_token
from skupper.daemon.services import ServiceRouter
from skupper.resources import Resource
from skupper.resources.network import network_document

log = logging.getLogger(__name__)

METRICS_HOST_SETTING = "metrics-host"
METRICS_PORT_SETTING = "metrics-port"
OBSERVER_FILE = "observer.json"
TOKEN_FILE = "console-token"


class SiteObservation:
    def __init__(self, runtime_dir: Path, links: LinkManager, services: ServiceRouter,
                 redemptions: Counter[str] | None = None) -> None:
        self._runtime = runtime_dir
        self._links = links
        self._services = services
        self._observer: Observer | None = None
        self._where: tuple[str, int | None] | None = None
        self.sources = MetricSources(
            site=self._site_facts, flows=services.bridge.flows, site_names=self._site_names,
            links=links.link_figures, reconnects=links.reconnects,
            redemptions=redemptions if redemptions is not None else Counter())
        self._render = make_registry(self.sources)

    # -- what is served ----------------------------------------------------------------

    def _site_facts(self) -> dict[str, str]:
        own = self._links.network[0] if self._links.network else {}
        return {key: str(own.get(key, "")) for key in ("id", "name", "namespace", "platform",
                                                         "version")}

    def _site_names(self) -> dict[str, str]:
        return {str(e.get("id", "")): str(e.get("name", "")) for e in self._links.network}

    def network(self) -> dict[str, Any]:
        """``GET /api/network``: network_document plus this site's live counters."""
        facts = self._site_facts()
        doc = network_document(self._links.network, facts["id"], self._links.network_links)
        figures = {lk.name: lk for lk in self._links.link_figures()}
        for link in doc["links"]:
            mine = figures.get(link["name"])
            if mine is not None:
                link["bytesSent"], link["bytesReceived"] = mine.sent_bytes, mine.received_bytes
                if mine.rtt_seconds is not None:
                    link["rttSeconds"] = mine.rtt_seconds
        flows = self._services.bridge.flows
        open_by_key = Counter(r.routing_key for r in flows.open.values())
        moved: dict[str, list[int]] = {}
        for (key, _source, _dest), totals in flows.series().items():
            held = moved.setdefault(key, [0, 0])
            held[0] += totals.sent
            held[1] += totals.received
        for service in doc["services"]:
            key = service["routingKey"]
            service["openConnections"] = open_by_key.get(key, 0)
            service["bytesIn"], service["bytesOut"] = moved.get(key, [0, 0])
        return {"site": facts, "time": time.time(), **doc}

    def connections(self) -> list[dict[str, Any]]:
        return self._services.bridge.flows.records(self._site_names())

    # -- where it listens --------------------------------------------------------------

    async def configure(self, site: Resource) -> None:
        """(Re)start the observer where the site's settings want it; errors are logged."""
        settings = site.get("spec", {}).get("settings") or {}
        host = str(settings.get(METRICS_HOST_SETTING)
                   or os.environ.get("SKUPPER_METRICS_HOST") or "127.0.0.1")
        port_text = str(settings.get(METRICS_PORT_SETTING) or "")
        port = int(port_text) if port_text.isdigit() and len(port_text) <= 5 else None
        if self._observer is not None and self._where == (host, port):
            return
        await self.stop()
        remembered = self._remembered_port()
        preferred = [port] if port else ([remembered] if remembered else [])
        try:
            sock = bind_first_free(host, preferred, port or DEFAULT_PORT)
        except OSError as exc:
            log.warning("the observer (metrics, console) cannot listen on %s: %s", host, exc)
            return
        observer = Observer(console_token(self._runtime / TOKEN_FILE), self._render,
                            self.network, self.connections)
        await observer.start(sock)
        observer.describe(self._runtime / OBSERVER_FILE)
        self._observer, self._where = observer, (host, port)

    def _remembered_port(self) -> int | None:
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            info = json.loads((self._runtime / OBSERVER_FILE).read_text())
            return int(str(info["metrics"]).rsplit(":", 1)[1].split("/", 1)[0])
        return None

    async def stop(self) -> None:
        if self._observer is not None:
            await self._observer.stop()
            self._observer = None
            self._where = None
