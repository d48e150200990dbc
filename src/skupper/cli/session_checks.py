"""What a command checks before it acts, and what a wait that went wrong says.

Shared by the asynchronous session (``cli.session``) and the blocking one
(``cli.blocking_session``), so both say the same lines; nothing here imports asyncio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from skupper.base.durations import humanize_duration
from skupper.base.errors import SkupperError
from skupper.resources.status import status_message

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
    if platform.name == "kubernetes":  # a controller in the cluster, not a local daemon
        return platform.not_running_error()  # type: ignore[union-attr]
    return SkupperError(
        "The site is stopped",
        f'the site daemon for namespace "{platform.namespace}" is not running',
        f'Start it with "skupper system start -n {platform.namespace}".',
    )


def require_site(session: SiteSession) -> Resource:
    if session.site is None:
        raise no_site_error(session.platform.namespace)
    return session.site


def require_running(session: SiteSession) -> None:
    if not session.platform.running():
        raise daemon_not_running_error(session.platform)


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
