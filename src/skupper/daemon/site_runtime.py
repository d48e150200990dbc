"""What a site runs, over any Store: the reconcilers, link access, links and services.

Both composition roots use it: the local daemon (``daemon.main``, SQLite) and the
cluster controller (``daemon.cluster``, the Kubernetes API). They differ only in their
process concerns (lock or lease, where ports are remembered) and in the extra
reconcilers they add, so the wiring lives here once.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from skupper.controller.grant import GrantReconciler
from skupper.controller.link import LinkReconciler
from skupper.controller.loop import Controller, Reconcile
from skupper.controller.service import ServiceReconciler
from skupper.controller.site import SiteReconciler
from skupper.daemon.link_access import DaemonLinkAccess
from skupper.daemon.links import LinkManager
from skupper.daemon.observation import SiteObservation
from skupper.daemon.services import ServiceRouter
from skupper.daemon.status_writer import StatusWriter
from skupper.resources import Resource
from skupper.store.interface import SecretStore, Store

STOP_SIGNAL_TASK = "stop-signal"
# After everything was told to stop, tasks still winding down (a link's handler
# closing its connection) get this long before the loop cancels them.
DRAIN_SECONDS = 2.0


class SiteRuntime:
    def __init__(
        self,
        store: Store,
        secrets: SecretStore,
        namespace: str,
        ports_file: Path,
        extra: Callable[[SiteRuntime], dict[str, Reconcile]] | None = None,
        platform: str = "systemd",
    ) -> None:
        """``extra(runtime)`` adds reconcilers by kind (the cluster's AccessToken)."""
        self.store = store
        self.writer = StatusWriter(store)
        self.links = LinkManager(self.writer, namespace, platform)
        self.services = ServiceRouter(namespace)
        self.links.services = self.services
        self.services.refresh_network = self.links.refresh_network
        self.link_access = DaemonLinkAccess(store, ports_file, self.links)
        self.observation = SiteObservation(ports_file.parent, self.links, self.services,
                                           self.link_access.redemptions)
        self.sites = SiteReconciler(store, secrets, self.link_access, namespace)
        grants = GrantReconciler(store, self.link_access, self._schedule_grant)
        links = LinkReconciler(store, secrets, self.links)
        services = ServiceReconciler(store, self.services)
        reconcilers: dict[str, Reconcile] = {
            "Site": self.sites.reconcile,
            "AccessGrant": grants.reconcile,
            "Link": links.reconcile,
            "Listener": services.reconcile_listener,
            "Connector": services.reconcile_connector,
        }
        reconcilers.update(extra(self) if extra else {})
        self.controller = Controller(store, reconcilers)
        self.controller.after_site = self._after_site
        self.services.notify = self._network_changed

    def _schedule_grant(self, delay: float, name: str) -> None:
        self.controller.schedule("AccessGrant", name, delay)

    async def current_site(self) -> Resource | None:
        return await self.sites.current_site()

    def _network_changed(self) -> None:
        # Matched conditions follow what the network offers now.
        for kind, names in (("Listener", self.services.bridge.listener_names),
                            ("Connector", self.services.bridge.connector_names)):
            for name in names():
                self.controller.enqueue(kind, name)

    async def _after_site(self) -> None:
        site = await self.sites.current_site()
        if site is not None:
            self.links.set_site(site)
            self.links.set_generated_links(site)
            self.links.set_revoked(site)
            await self.observation.configure(site)
        # Everything that hangs off the site follows it (the Site itself excluded).
        for kind in self.controller.kinds:
            if kind != "Site":
                await self.controller.enqueue_all(kind)

    async def run(
        self, extra_tasks: dict[str, Coroutine[Any, Any, None]] | None = None
    ) -> None:
        """Reconcile until SIGTERM/SIGINT; a crashed task ends the run with its error."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        self.writer.start()
        tasks = {asyncio.create_task(self.controller.run(), name="controller"),
                 asyncio.create_task(stop.wait(), name=STOP_SIGNAL_TASK)}
        tasks |= {asyncio.create_task(coro, name=name)
                  for name, coro in (extra_tasks or {}).items()}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.get_name() != STOP_SIGNAL_TASK:
                    task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.stop()
            await _drain_other_tasks(DRAIN_SECONDS)

    async def stop(self) -> None:
        await self.observation.stop()
        await self.links.stop()
        await self.services.stop()
        await self.link_access.disable()
        await self.writer.flush_and_stop()


async def _drain_other_tasks(timeout: float) -> None:
    """Let tasks that are ending on their own end, so none is cancelled mid-cleanup.

    A link handler cancelled while it closes its connection makes Python 3.11's
    asyncio.streams log a CancelledError traceback; a clean stop logs none.
    """
    current = asyncio.current_task()
    others = {task for task in asyncio.all_tasks() if task is not current}
    if others:
        await asyncio.wait(others, timeout=timeout)
