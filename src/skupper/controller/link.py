"""The Link reconciler: check a Link's credentials and endpoint, then hand it to the router.

The router's link manager owns the Operational condition; this reconciler reports
only what stops a Link from being dialed at all.
"""

from __future__ import annotations

from skupper.base.text import printable
from skupper.controller.runtime import LinkRuntime
from skupper.resources import Resource
from skupper.resources.site import is_site_credential
from skupper.resources.status import derive_ready, set_condition
from skupper.store.interface import NotFound, SecretStore, Store

LINK_REQUIRED = ("Configured", "Operational")
DIAL_ROLE = "inter-router"


def dial_endpoint(link: Resource) -> dict[str, str] | None:
    for endpoint in link.get("spec", {}).get("endpoints") or []:
        if endpoint.get("name") == DIAL_ROLE:
            return {k: str(v) for k, v in endpoint.items()}
    return None


class LinkReconciler:
    def __init__(self, store: Store, secrets: SecretStore, runtime: LinkRuntime) -> None:
        self._store = store
        self._secrets = secrets
        self._runtime = runtime

    async def reconcile(self, name: str) -> None:
        try:
            link = await self._store.get("Link", name)
        except NotFound:
            await self._runtime.remove_link(name)
            return
        problem = ""
        credentials: dict[str, bytes] = {}
        secret = str(link.get("spec", {}).get("tlsCredentials") or name)
        if is_site_credential(secret):
            # A link dialing with the site's own CA or server key would hand them to
            # whoever it dials; only credentials from a redemption are link credentials.
            problem = (f'the link\'s credentials name the site credential "{printable(secret)}"; '
                       "a link may only use the credentials its redemption stored")
        else:
            try:
                credentials = await self._secrets.get(secret)
            except NotFound:
                problem = f'the link\'s credentials (secret "{secret}") are missing'
        if not problem and dial_endpoint(link) is None:
            problem = f"the link has no {DIAL_ROLE} endpoint"
        if not problem and not all(k in credentials for k in ("tls.crt", "tls.key", "ca.crt")):
            problem = f'the secret "{secret}" lacks tls.crt, tls.key or ca.crt'
        if problem:
            await self._runtime.remove_link(name)
            await self._store.mutate_status("Link", name, lambda r: _misconfigured(r, problem))
            return
        await self._runtime.ensure_link(link, credentials)


def _misconfigured(link: Resource, problem: str) -> None:
    set_condition(link, "Configured", False, "Error", problem)
    set_condition(link, "Operational", False, "Error", problem)
    derive_ready(link, LINK_REQUIRED)
