"""The site's Prometheus metrics, read from the live objects at each scrape.

Nothing is counted here: the data path keeps plain integers (``router.flows``, the link
and grant tallies) and this collector turns them into metric families when Prometheus
asks, so a scrape costs the scrape, and traffic costs an integer addition.

Names follow upstream's network observer where it has one (``skupper_site_info``,
``skupper_connections_opened_total``, ``skupper_sent_bytes_total``,
``skupper_received_bytes_total``); the README lists every metric and what it means.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest

from skupper.router.flows import FlowLog


@dataclass
class LinkFigures:
    """One link as the metrics see it (from the link manager)."""

    name: str
    direction: str  # outgoing | incoming
    remote_site: str
    up: bool
    rtt_seconds: float | None = None
    sent_bytes: int = 0
    received_bytes: int = 0


@dataclass
class MetricSources:
    site: Callable[[], dict[str, str]]  # name, id, namespace, platform, version
    flows: FlowLog
    site_names: Callable[[], dict[str, str]]  # site id -> name
    links: Callable[[], Iterable[LinkFigures]] = lambda: ()
    reconnects: Counter[str] = field(default_factory=Counter)  # link name -> redials
    redemptions: Counter[str] = field(default_factory=Counter)  # outcome -> count


class SiteCollector:
    def __init__(self, sources: MetricSources) -> None:
        self._s = sources

    def collect(self) -> Iterator[Metric]:
        site = self._s.site()
        info = GaugeMetricFamily("skupper_site_info", "This site: always 1, its facts as labels",
                                 labels=["site", "site_id", "namespace", "platform", "version"])
        info.add_metric([site.get(k, "") for k in ("name", "id", "namespace", "platform",
                                                   "version")], 1)
        yield info
        yield from self._flows()
        yield from self._links()
        redemptions = CounterMetricFamily(
            "skupper_grant_redemptions", "Redemption attempts at this site's grant server",
            labels=["outcome"])
        for outcome, count in sorted(self._s.redemptions.items()):
            redemptions.add_metric([outcome], count)
        yield redemptions

    def _flows(self) -> Iterator[Metric]:
        names = self._s.site_names()
        labels = ["routing_key", "source_site", "dest_site"]
        families = {
            "opened": CounterMetricFamily("skupper_connections_opened",
                                          "Connections opened by clients at this site's "
                                          "listeners", labels=labels),
            "closed": CounterMetricFamily("skupper_connections_closed",
                                          "Those connections that have ended", labels=labels),
            "sent": CounterMetricFamily("skupper_sent_bytes",
                                        "Bytes those clients sent", labels=labels),
            "received": CounterMetricFamily("skupper_received_bytes",
                                            "Bytes those clients received", labels=labels),
        }
        for (key, source, dest), totals in sorted(self._s.flows.series().items()):
            values = [key, names.get(source, source), names.get(dest, dest)]
            for attribute, family in families.items():
                family.add_metric(values, getattr(totals, attribute))
        yield from families.values()
        refused = CounterMetricFamily("skupper_connections_refused",
                                      "Clients refused: no reachable connector",
                                      labels=["routing_key"])
        for key, count in sorted(self._s.flows.refused.items()):
            refused.add_metric([key], count)
        yield refused
        open_now = GaugeMetricFamily("skupper_connections_open",
                                     "Connections open at this site, by the end it holds",
                                     labels=["routing_key", "role"])
        tally: Counter[tuple[str, str]] = Counter(
            (r.routing_key, r.role) for r in self._s.flows.open.values())
        for (key, role), count in sorted(tally.items()):
            open_now.add_metric([key, role], count)
        yield open_now

    def _links(self) -> Iterator[Metric]:
        links = list(self._s.links())
        up_total = GaugeMetricFamily("skupper_links_up", "Links of this site that are up",
                                     labels=["direction"])
        for direction in ("outgoing", "incoming"):
            up_total.add_metric([direction], sum(1 for lk in links
                                                 if lk.direction == direction and lk.up))
        yield up_total
        labels = ["link", "direction", "remote_site"]
        up = GaugeMetricFamily("skupper_link_up", "1 while the link is up", labels=labels)
        rtt = GaugeMetricFamily("skupper_link_rtt_seconds",
                                "Round-trip time of the link's last heartbeat", labels=labels)
        sent = CounterMetricFamily("skupper_link_sent_bytes", "Bytes sent on the link",
                                   labels=labels)
        received = CounterMetricFamily("skupper_link_received_bytes",
                                       "Bytes received on the link", labels=labels)
        for lk in sorted(links, key=lambda lk: (lk.name, lk.direction)):
            values = [lk.name, lk.direction, lk.remote_site]
            up.add_metric(values, 1 if lk.up else 0)
            if lk.rtt_seconds is not None:
                rtt.add_metric(values, lk.rtt_seconds)
            sent.add_metric(values, lk.sent_bytes)
            received.add_metric(values, lk.received_bytes)
        yield from (up, rtt, sent, received)
        reconnects = CounterMetricFamily("skupper_link_reconnects",
                                         "Times an outgoing link was dialed again after "
                                         "it went down", labels=["link"])
        for name, count in sorted(self._s.reconnects.items()):
            reconnects.add_metric([name], count)
        yield reconnects


def make_registry(sources: MetricSources) -> Callable[[], bytes]:
    """The site's collector and the process's own, as a function that renders them."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SiteCollector(sources))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)

    def render() -> bytes:
        return generate_latest(registry)

    return render
