"""The Site reconciler: CA, server certificates, link access, endpoints, status."""

from __future__ import annotations

import logging
import os
import socket
from datetime import UTC, datetime

from skupper import __version__
from skupper.base.durations import parse_duration
from skupper.controller.credentials import (
    GRANT_SERVER,
    GRANT_SERVER_CA,
    SITE_CA,
    SITE_SERVER,
    BrokenCredential,
    ensure_ca,
    ensure_server_certificate,
)
from skupper.controller.runtime import LinkAccessConfig, LinkAccessRuntime
from skupper.resources import Resource
from skupper.resources.site import (
    LINK_ACCESS_HOST_SETTING,
    SITE_REQUIRED,
    link_access_enabled,
)
from skupper.resources.status import derive_ready, set_condition
from skupper.store.interface import NotFound, SecretStore, Store

log = logging.getLogger(__name__)

LINK_CERTIFICATE_VALIDITY_SETTING = "link-certificate-validity"
DEFAULT_LINK_CERTIFICATE_VALIDITY = "43800h"  # five years, as upstream issues them
# Names this run of the daemon in its Running condition: a pid alone repeats (it is 1 at
# every start of a container), and an unchanged status is not written, so a restarted
# daemon would never tell "skupper system start" that it runs.
_RUN = f"pid {os.getpid()}, since {datetime.now(UTC):%Y-%m-%dT%H:%M:%S.%fZ}"


def link_certificate_validity(site: Resource) -> float:
    """Seconds an issued link certificate is valid (site setting; upstream's 5 years)."""
    settings = site.get("spec", {}).get("settings") or {}
    text = str(settings.get(LINK_CERTIFICATE_VALIDITY_SETTING) or DEFAULT_LINK_CERTIFICATE_VALIDITY)
    seconds = parse_duration(text)
    if seconds < 60:
        raise ValueError(f"{LINK_CERTIFICATE_VALIDITY_SETTING} {text!r} is under a minute")
    return seconds


def link_access_host(site: Resource) -> str:
    """The name or address remote sites use to reach this site."""
    settings = site.get("spec", {}).get("settings") or {}
    host = settings.get(LINK_ACCESS_HOST_SETTING) or os.environ.get("SKUPPER_LINK_ACCESS_HOST")
    return str(host or socket.getfqdn())


class SiteReconciler:
    def __init__(
        self, store: Store, secrets: SecretStore, runtime: LinkAccessRuntime, namespace: str
    ) -> None:
        self._store = store
        self._secrets = secrets
        self._runtime = runtime
        self._namespace = namespace

    async def current_site(self) -> Resource | None:
        sites = await self._store.list("Site")
        return sites[0] if sites else None

    async def reconcile(self, name: str) -> None:
        try:
            site = await self._store.get("Site", name)
        except NotFound:
            await self._runtime.disable()
            return
        try:
            validity = link_certificate_validity(site)
        except ValueError as exc:
            await self._runtime.disable()
            await self._write_status(site, [], False, f"Invalid site setting: {exc}",
                                     configured=False)
            return
        try:
            await self._apply(site, validity)
        except BrokenCredential as exc:
            # Nothing listens or trusts while a credential is broken, and nothing is
            # regenerated: a new CA would silently break every link issued from the old.
            await self._runtime.disable()
            log.error("site %s: %s", site["metadata"]["name"], exc)
            await self._write_status(site, [], False, _broken_message(exc), configured=False)

    async def _apply(self, site: Resource, validity: float) -> None:
        site_name = site["metadata"]["name"]
        ca = await ensure_ca(self._secrets, SITE_CA, f"{site_name} site CA")
        endpoints: list[dict[str, object]] = []
        resolved, message = True, "OK"
        if link_access_enabled(site):
            host = link_access_host(site)
            config = LinkAccessConfig(
                link_certificate_validity=validity,
                host=host,
                site_ca=ca,
                router_server=await ensure_server_certificate(
                    self._secrets, SITE_SERVER, ca, [host]
                ),
                grant_server_ca=(grant_ca := await ensure_ca(
                    self._secrets, GRANT_SERVER_CA, f"{site_name} grant server CA"
                )),
                grant_server=await ensure_server_certificate(
                    self._secrets, GRANT_SERVER, grant_ca, [host]
                ),
            )
            try:
                endpoints = list((await self._runtime.enable(config)).endpoints)
            except OSError as exc:
                resolved, message = False, f"Cannot listen for links: {exc}"
        else:
            await self._runtime.disable()
        await self._write_status(site, endpoints, resolved, message)

    async def _write_status(
        self, site: Resource, endpoints: list[dict[str, object]], resolved: bool, message: str,
        *, configured: bool = True,
    ) -> None:
        before = repr(site.get("status"))
        status = site.setdefault("status", {})
        status["defaultIssuer"] = site.get("spec", {}).get("defaultIssuer") or SITE_CA
        status["endpoints"] = endpoints
        status.setdefault("sitesInNetwork", 1)
        status["controller"] = {
            "name": "skupper-site-daemon",
            "namespace": self._namespace,
            "version": __version__,
        }
        if configured:
            set_condition(site, "Configured", True, "Configured", "OK")
        else:
            set_condition(site, "Configured", False, "Error", message)
        set_condition(site, "Running", True, "Running", f"site daemon running ({_RUN})")
        set_condition(site, "Resolved", resolved, "Resolved" if resolved else "Error", message)
        derive_ready(site, SITE_REQUIRED)
        if repr(site.get("status")) != before:
            await self._store.update_status(site)
            log.info("site %s: %s", site["metadata"]["name"], status.get("message"))


def _broken_message(exc: BrokenCredential) -> str:
    return (f'The site credential "{exc.name}" is unusable: {exc.why}. Restore it from a '
            'backup, or recreate the site ("skupper site delete", then "skupper site create"; '
            "its links must then be redeemed again)")
