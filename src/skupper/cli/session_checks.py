"""What a command checks before it acts, and what a wait that went wrong says.

Shared by the asynchronous session (``cli.session``) and the blocking one
(``cli.blocking_session``), so both say the same lines; nothing here imports asyncio.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from skupper.base.durations import humanize_duration
from skupper.base.errors import SkupperError
from skupper.resources.status import ERROR, status_message

if TYPE_CHECKING:
    from skupper.platforms.kubernetes import KubernetesPlatform
    from skupper.platforms.local_platform import LocalPlatform
    from skupper.resources import Resource

# Daemon liveness is checked this often while waiting, so a crash is reported at once.
LIVENESS_INTERVAL = 0.25
# A daemon just launched may take this long to take its lock.
STARTUP_GRACE = 5.0


class SiteSession(Protocol):
    """What the checks need of a session, blocking or not."""

    @property
    def platform(self) -> LocalPlatform | KubernetesPlatform: ...

    @property
    def site(self) -> Resource | None: ...


def no_site_error(namespace: str, action: str = "") -> SkupperError:
    return SkupperError(
        "No site resource exists" + (f" {action}" if action else ""),
        f'there is no site in namespace "{namespace}"',
        'Create one with "skupper site create <name>".',
    )


def daemon_not_running_error(platform: LocalPlatform | KubernetesPlatform) -> SkupperError:
    """What the platform says when its site daemon (or controller) is not running."""
    return platform.not_running_error()


def require_site(session: SiteSession) -> Resource:
    if session.site is None:
        raise no_site_error(session.platform.namespace)
    return session.site


def require_running(session: SiteSession) -> None:
    if not session.platform.running():
        raise daemon_not_running_error(session.platform)


def done_or_failed(done: Callable[[Resource], bool], failed: list[Resource], *,
                   fail_on_error: bool = True) -> Callable[[Resource], bool]:
    """``done`` for a wait, which also ends on an Error status with a message (the
    resource is then appended to ``failed``, for ``wait_failed_error``)."""
    def finished(resource: Resource) -> bool:
        if done(resource):
            return True
        status = resource.get("status") or {}
        if fail_on_error and status.get("status") == ERROR and status.get("message"):
            failed.append(resource)
            return True
        return False

    return finished


def daemon_gone(platform: LocalPlatform | KubernetesPlatform, waited: float) -> bool:
    """Whether a wait of ``waited`` seconds so far should give up on the daemon: the
    one this command started exited (no grace), or none runs after the start-up grace."""
    exited = getattr(platform, "daemon_exited", None)
    if exited is not None and exited():
        return True
    return not platform.running() and waited > STARTUP_GRACE


def daemon_stopped_error(platform: LocalPlatform | KubernetesPlatform, what: str) -> SkupperError:
    return SkupperError(
        f"{what} failed",
        getattr(platform, "stopped_message", "the site daemon stopped"),
        f"See its log: {platform.log_file}",
    )


def wait_timed_out_error(what: str, timeout: float, last: Resource | None) -> SkupperError:
    reason = status_message(last) if last else "no status yet"
    return SkupperError(
        f"{what} did not complete within {humanize_duration(timeout)}",
        f"its status is: {reason}",
    )


def wait_failed_error(what: str, resource: Resource) -> SkupperError:
    return SkupperError(f"{what} failed", status_message(resource))
