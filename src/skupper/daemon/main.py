"""``python -m skupper.daemon --namespace NS``: one site daemon per namespace."""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import logging
import os
import sys
from datetime import UTC, datetime

from skupper.base.files import ensure_private_dir, write_private
from skupper.daemon.site_runtime import SiteRuntime
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
    # The container platforms say which they are; a bare host is upstream's "linux".
    runtime = SiteRuntime(store, FileSecretStore(paths.secrets), paths.namespace,
                          paths.ports_file,
                          platform=os.environ.get("SKUPPER_SITE_PLATFORM", "systemd"))
    try:
        await runtime.run()
    finally:
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
