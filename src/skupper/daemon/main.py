"""``python -m skupper.daemon --namespace NS``: one site daemon per namespace.

Exit status: 0 after a clean stop (SIGTERM/SIGINT) or when another daemon already
holds the namespace; ``EXIT_UNUSABLE`` (78) when the namespace cannot be served at all
(a damaged store, a log that cannot be opened), said once in the log, and the systemd
unit does not restart on it; 1 for any other failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import logging
import os
import resource
import sys

from skupper.base.errors import SkupperError
from skupper.base.files import ensure_private_dir, write_private
from skupper.daemon import event_loop, logs
from skupper.daemon.site_runtime import SiteRuntime
from skupper.platforms.local import NamespacePaths
from skupper.platforms.local_daemon import EXIT_UNUSABLE
from skupper.store.secrets import FileSecretStore
from skupper.store.sqlite import SqliteStore, StoreUnusable

log = logging.getLogger("skupper.daemon")

# How often the daemon checks that its store is still usable (cheap: one attribute).
_STORE_CHECK_SECONDS = 0.2


def _raise_open_files_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit: every connection through the site costs
    one or two descriptors, and service managers start services at a soft 1024 (systemd's
    default) while allowing far more (this sandbox's hard limit is 20000)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft >= hard:
        return  # an unlimited hard limit is left to the admin; nothing to raise otherwise
    # On failure it keeps the soft limit it had; the start line in the log says which.
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _hold_lock(paths: NamespacePaths) -> int | None:
    """Take the namespace's lock for the life of this process; None if another has it."""
    fd = os.open(paths.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class _StoreFailureOnce(logging.Filter):
    """Drop records about a damaged store: the daemon reports it once, as it stops.

    Until the store check ends the run, every reconcile that touches the store fails
    with the same StoreUnusable; logging each would be the loop this exit avoids.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, StoreUnusable)


async def _store_health(store: SqliteStore) -> None:
    """End the run when the store turns out to be damaged, instead of failing forever."""
    while store.failure is None:
        await asyncio.sleep(_STORE_CHECK_SECONDS)
    raise store.failure


async def serve(paths: NamespacePaths) -> None:
    store = paths.open_store()
    # The container platforms say which they are; a bare host is upstream's "linux".
    runtime = SiteRuntime(store, FileSecretStore(paths.secrets), paths.namespace,
                          paths.ports_file,
                          platform=os.environ.get("SKUPPER_SITE_PLATFORM", "systemd"))
    try:
        await runtime.run({"store-health": _store_health(store)})
    finally:
        store.close()


def _say(text: str) -> None:
    """Before the log is open, stderr is all there is (logs/daemon-stderr.log)."""
    print(f"skupper-daemon: {text}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    # Everything this process creates is private, whatever the caller's umask.
    os.umask(0o077)
    parser = argparse.ArgumentParser(prog="skupper-daemon")
    parser.add_argument("--namespace", default="default")
    args = parser.parse_args(argv)
    try:
        paths = NamespacePaths.for_namespace(args.namespace)
    except SkupperError as error:
        _say(error.line())
        return 2
    try:
        paths.make_root()
        ensure_private_dir(paths.runtime)
        ensure_private_dir(paths.logs)
        daemon_log = logs.configure(paths.log_file)
        daemon_log.handler.filters.insert(0, _StoreFailureOnce())  # before the rate limit
    except OSError as error:
        _say(f"Cannot open the site daemon's log at {paths.log_file}: "
             f"{error.strerror or error}. Move the offending file aside.")
        return EXIT_UNUSABLE
    try:
        return _run_locked(paths, args.namespace)
    finally:
        daemon_log.close()


def _run_locked(paths: NamespacePaths, namespace: str) -> int:
    lock = _hold_lock(paths)
    if lock is None:
        log.info("a site daemon already runs for namespace %s", namespace)
        return 0
    try:
        loop_kind = event_loop.chosen()
    except SkupperError as error:
        log.error("%s", error.line())
        os.close(lock)
        return EXIT_UNUSABLE
    write_private(paths.pid_file, f"{os.getpid()}\n")
    _raise_open_files_limit()
    log.info("site daemon starting for namespace %s (pid %d, event loop %s, open files "
             "limit %d)", namespace, os.getpid(), loop_kind,
             resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    log.debug("%s=%r asked for the event loop", event_loop.ENV_VAR,
              os.environ.get(event_loop.ENV_VAR, "auto"))
    try:
        event_loop.run(serve(paths), loop_kind)
    except StoreUnusable as error:
        log.error("%s", error.line())
        log.info("site daemon stopped (exit status %d: nothing to serve from)", EXIT_UNUSABLE)
        return EXIT_UNUSABLE
    except Exception:
        log.critical("site daemon failed", exc_info=True)
        return 1
    finally:
        paths.pid_file.unlink(missing_ok=True)
        os.close(lock)
    log.info("site daemon stopped")
    return 0
