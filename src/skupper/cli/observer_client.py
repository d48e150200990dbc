"""Finding and asking the site daemon's observer (metrics, console, JSON API).

The daemon writes ``observer.json`` (0600, it holds the console token) into its runtime
folder once its observer listens; the CLI reads it and asks over HTTP on that address.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from skupper.base.errors import SkupperError
from skupper.cli.options import Target

if TYPE_CHECKING:
    from pathlib import Path

TIMEOUT_SECONDS = 5.0


async def observer_info(target: Target) -> dict[str, str]:
    """Where the site's observer listens, and its token; one clear line when it cannot."""
    from skupper.cli.session import open_session, require_running, require_site

    async with open_session(target) as session:
        require_site(session)
        require_running(session)
        where = session.platform.observer_file()
    if where is None:
        raise SkupperError(
            "The observer is not reachable from here",
            f"on the {session.platform.name} platform it runs in the cluster",
            "Run \"kubectl port-forward deployment/skupper-controller 9464\", then open the "
            "console address that \"kubectl exec deployment/skupper-controller -- cat "
            "/var/run/skupper/observer.json\" gives (its port is 9464).")
    info = read_info(where)
    if info is None:
        raise SkupperError("The observer is not ready",
                           f"the site daemon has not written {where} yet",
                           "Wait a moment and try again; see the daemon's log if it lasts.")
    return info


def read_info(where: Path) -> dict[str, str] | None:
    """What ``observer.json`` says (where, and the token); None while it is not there."""
    try:
        info = json.loads(where.read_text())
    except (OSError, ValueError):
        return None
    keys = ("metrics", "console", "api", "token")
    if not isinstance(info, dict) or not all(isinstance(info.get(k), str) for k in keys):
        return None
    return {k: str(info[k]) for k in keys}


def fetch_json(info: dict[str, str], path: str) -> Any:
    """GET ``path`` of the observer's API with the token; its JSON document."""
    import http.client
    from urllib.parse import urlsplit

    url = urlsplit(info["api"])
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port,
                                            timeout=TIMEOUT_SECONDS)
    try:
        connection.request("GET", f"{url.path}{path}",
                           headers={"Authorization": f"Bearer {info['token']}"})
        response = connection.getresponse()
        body = response.read(16 * 1024 * 1024)
    except OSError as exc:
        raise SkupperError(f"Cannot reach the site's observer at {info['api']}",
                           exc.strerror or str(exc),
                           "Is the site daemon running? See its log.") from None
    finally:
        connection.close()
    if response.status != 200:
        raise SkupperError(f"The site's observer answered {response.status}",
                           body[:200].decode("utf-8", "replace").strip() or response.reason)
    return json.loads(body)
