"""``python -m skupper.daemon --namespace NS``: one site daemon per namespace."""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import logging
import os
import signal
import sys
from datetime import UTC, datetime

from skupper.base.files import ensure_private_dir, write_private
from skupper.controller.grant import GrantReconciler
from skupper.controller.link import LinkReconciler
from skupper.controller.loop import Controller
from skupper.controller.service import ServiceReconciler
from skupper.controller.site import SiteReconciler
from skupper.daemon.link_access import DaemonLinkAccess
from skupper.daemon.links import LinkManager
from skupper.daemon.services import ServiceRouter
from skupper.daemon.status_writer import StatusWriter
from skupper.platforms.local import NamespacePaths
from skupper.store.secrets import FileSecretStore
from skupper.store.sqlite import SqliteStore

log = logging.getLogger("skupper.daemon")


def _hold_lock(paths: NamespacePaths) -> int | None:
    """Take the namespace's lock for the life of this process; None if another has it."""
    fd = os.open(paths.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


async def serve(paths: NamespacePaths) -> None:
    store = SqliteStore(paths.store)
    secrets = FileSecretStore(paths.secrets)
    writer = StatusWriter(store)
    links = LinkManager(writer, paths.namespace)
    services = ServiceRouter(paths.namespace)
    links.services = services
    services.refresh_network = links.refresh_network
    link_access = DaemonLinkAccess(store, paths.ports_file, links)
    controller: Controller

    def schedule_grant(delay: float, name: str) -> None:
        controller.schedule("AccessGrant", name, delay)

    sites = SiteReconciler(store, secrets, link_access, paths.namespace)
    grants = GrantReconciler(store, link_access, schedule_grant)
    link_reconciler = LinkReconciler(store, secrets, links)
    service_reconciler = ServiceReconciler(store, services)
    controller = Controller(
        store,
        {"Site": sites.reconcile, "AccessGrant": grants.reconcile,
         "Link": link_reconciler.reconcile,
         "Listener": service_reconciler.reconcile_listener,
         "Connector": service_reconciler.reconcile_connector},
    )

    def network_changed() -> None:
        # Matched conditions follow what the network offers now.
        for kind, names in (("Listener", services.bridge.listener_names),
                            ("Connector", services.bridge.connector_names)):
            for name in names():
                controller.enqueue(kind, name)

    services.notify = network_changed

    async def after_site() -> None:
        site = await sites.current_site()
        if site is not None:
            links.set_site(site)
            links.set_revoked(site)
        await controller.enqueue_all("AccessGrant")
        await controller.enqueue_all("Link")

    controller.after_site = after_site
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    writer.start()
    runner = asyncio.create_task(controller.run(), name="controller")
    stopper = asyncio.create_task(stop.wait(), name="stop-signal")
    try:
        done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if runner in done:
            runner.result()  # a crashed controller ends the daemon with its error
    finally:
        for task in (runner, stopper):
            task.cancel()
        await asyncio.gather(runner, stopper, return_exceptions=True)
        await links.stop()
        await services.stop()
        await link_access.disable()
        await writer.flush_and_stop()
        store.close()
        log.info("site daemon stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="skupper-daemon")
    parser.add_argument("--namespace", default="default")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("SKUPPER_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.Formatter.converter = lambda *_: datetime.now(UTC).timetuple()
    paths = NamespacePaths.for_namespace(args.namespace)
    ensure_private_dir(paths.root)
    ensure_private_dir(paths.runtime)
    lock = _hold_lock(paths)
    if lock is None:
        log.info("a site daemon already runs for namespace %s", args.namespace)
        return 0
    write_private(paths.pid_file, f"{os.getpid()}\n")
    log.info("site daemon starting for namespace %s (pid %d)", args.namespace, os.getpid())
    try:
        asyncio.run(serve(paths))
    finally:
        paths.pid_file.unlink(missing_ok=True)
        os.close(lock)
    return 0
