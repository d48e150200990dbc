"""The AccessGrant reconciler: code, URL, CA and expiry; honest status; revocation; cleanup.

A grant that can no longer be redeemed says why (expired, used up, revoked, invalid)
and is removed once the site's retention period has passed. Wrong codes never make a
grant unusable: they are slowed at the grant server and counted (``wrongCodes``).
Certificates that must no longer be trusted (all of a revoked grant's, and any whose
answer never reached its client) are added to the site's revocation list, which
outlives the grant.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from skupper.base.durations import parse_duration
from skupper.controller.runtime import LinkAccessRuntime
from skupper.grants.codes import generate_code
from skupper.grants.index import index_for
from skupper.grants.redemption import REVOKED_ANNOTATION, redemptions_allowed
from skupper.resources import Resource
from skupper.resources.model import format_rfc3339, now_rfc3339, parse_rfc3339
from skupper.resources.status import derive_ready, get_condition, set_condition
from skupper.store.interface import NotFound, Store

log = logging.getLogger(__name__)

DEFAULT_EXPIRATION_WINDOW = "15m"
GRANT_REQUIRED = ("Processed", "Resolved", "Usable")
# Site setting: how long a grant that can no longer be redeemed is kept for inspection.
RETENTION_SETTING = "grant-retention"
DEFAULT_RETENTION = "24h"


# A grant that did its job, or whose time ran out, is not in error: its status says so
# plainly (access-grant status shows Used, Expired, Revoked).
GRANT_OUTCOMES = {"RedemptionsUsed": "Used", "Expired": "Expired", "Revoked": "Revoked"}


def expiration_time(grant: Resource) -> datetime:
    """When the grant stops being redeemable: creation time plus the window."""
    window = parse_duration(grant["spec"].get("expirationWindow") or DEFAULT_EXPIRATION_WINDOW)
    created = parse_rfc3339(grant["metadata"].get("creationTimestamp") or now_rfc3339())
    return created + timedelta(seconds=window)


def untrusted_serials(grant: Resource) -> list[str]:
    """Serials (hex) of single certificates of this grant that links must refuse."""
    return sorted(set((grant.get("status") or {}).get("distrustedCertificates") or []))


def grant_revoked(grant: Resource) -> bool:
    return REVOKED_ANNOTATION in (grant.get("metadata", {}).get("annotations") or {})


def retention_seconds(site: Resource | None) -> float:
    settings = (site or {}).get("spec", {}).get("settings") or {}
    try:
        return parse_duration(str(settings.get(RETENTION_SETTING) or DEFAULT_RETENTION))
    except ValueError:
        log.warning("invalid %s setting %r; using %s", RETENTION_SETTING,
                    settings.get(RETENTION_SETTING), DEFAULT_RETENTION)
        return parse_duration(DEFAULT_RETENTION)


class GrantReconciler:
    def __init__(
        self,
        store: Store,
        runtime: LinkAccessRuntime,
        schedule: Callable[[float, str], None],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._runtime = runtime
        # schedule(delay, name): reconcile the grant again later (expiry, cleanup).
        self._schedule = schedule
        self._now = now

    async def reconcile(self, name: str) -> None:
        try:
            grant = await self._store.get("AccessGrant", name)
        except NotFound:
            index_for(self._store).forget_name(name)
            return
        before = repr(grant.get("status"))
        # Before the grant's URL is published: the grant server finds every grant it can
        # be asked for without listing them all (grants/index.py).
        index_for(self._store).add(grant)
        self._update(grant)
        # Each redemption brings a grant here; only a grant past its use, revoked or with
        # distrusted certificates needs the Site (retention, revocation lists).
        usable = get_condition(grant, "Usable")
        site = None
        if (usable is None or usable.get("status") != "True" or grant_revoked(grant)
                or untrusted_serials(grant)):
            sites = await self._store.list("Site")
            site = sites[0] if sites else None
        if await self._remove_if_retired(grant, site):
            return
        if repr(grant.get("status")) != before:
            await self._store.update_status(grant)
        await self._distrust(site, grant)

    async def _distrust(self, site: Resource | None, grant: Resource) -> None:
        """Put a revoked grant, and single distrusted certificates, on the site's lists.

        The lists live in the Site, so they outlive the grant; a link certificate names
        its grant, so one entry revokes every certificate the grant ever issued.
        """
        serials = untrusted_serials(grant)
        revoked = grant_revoked(grant)
        if site is None or not (serials or revoked):
            return
        when = format_rfc3339(self._now())
        name = str(grant["metadata"]["name"])
        uid = str(grant["metadata"].get("uid", ""))

        def change(current: Resource) -> None:
            status = current.setdefault("status", {})
            if revoked:
                grants: list[dict[str, Any]] = status.setdefault("revokedGrants", [])
                if uid not in {entry.get("uid") for entry in grants}:
                    grants.append({"uid": uid, "name": name, "time": when})
                    log.info("grant %s revoked with all its certificates", name)
            listed: list[dict[str, Any]] = status.setdefault("revokedCertificates", [])
            known = {entry.get("serial") for entry in listed}
            for serial in serials:
                if serial not in known:
                    listed.append({"serial": serial, "grant": name, "time": when})
                    log.info("certificate %s of grant %s revoked", serial, name)

        await self._store.mutate_status("Site", site["metadata"]["name"], change)

    async def _remove_if_retired(self, grant: Resource, site: Resource | None) -> bool:
        usable = get_condition(grant, "Usable")
        if usable is None or usable.get("status") == "True":
            return False
        status = grant.get("status") or {}
        if usable.get("reason") == "Expired" and status.get("expirationTime"):
            ended = parse_rfc3339(status["expirationTime"])
        else:
            ended = parse_rfc3339(usable.get("lastTransitionTime") or now_rfc3339())
        remaining = (ended + timedelta(seconds=retention_seconds(site)) - self._now())
        if remaining.total_seconds() > 0:
            self._schedule(remaining.total_seconds() + 0.05, grant["metadata"]["name"])
            return False
        # What it revoked stays on the site's lists; only the grant goes.
        await self._distrust(site, grant)
        try:
            await self._store.delete("AccessGrant", grant["metadata"]["name"])
            log.info("grant %s removed after its retention period", grant["metadata"]["name"])
        except NotFound:
            pass
        return True

    def _update(self, grant: Resource) -> None:
        spec = grant.setdefault("spec", {})
        status = grant.setdefault("status", {})
        try:
            expires = expiration_time(grant)
            allowed = redemptions_allowed(grant)
        except (ValueError, TypeError, OverflowError) as exc:
            set_condition(grant, "Processed", False, "Error", f"Invalid grant: {exc}")
            derive_ready(grant, GRANT_REQUIRED, GRANT_OUTCOMES)
            return
        status.setdefault("code", spec.get("code") or generate_code())
        status.setdefault("redemptions", 0)
        status["expirationTime"] = format_rfc3339(expires)
        set_condition(grant, "Processed", True, "Processed", "OK")
        state = self._runtime.state
        if state is None or not state.grant_url_base:
            set_condition(
                grant, "Resolved", False, "Error",
                "Link access is not enabled at this site, so the grant server is not running",
            )
        else:
            status["url"] = state.grant_url_base + grant["metadata"]["uid"]
            status["ca"] = state.grant_ca_pem.decode()
            set_condition(grant, "Resolved", True, "Resolved", "OK")
        self._usable(grant, expires, allowed)
        derive_ready(grant, GRANT_REQUIRED, GRANT_OUTCOMES)

    def _usable(self, grant: Resource, expires: datetime, allowed: int) -> None:
        status = grant["status"]
        annotations = grant.get("metadata", {}).get("annotations") or {}
        remaining = (expires - self._now()).total_seconds()
        if REVOKED_ANNOTATION in annotations:
            set_condition(
                grant, "Usable", False, "Revoked",
                f"The grant was revoked at {annotations[REVOKED_ANNOTATION]}; "
                "no certificate issued from it can link any more",
            )
        elif remaining <= 0:
            set_condition(grant, "Usable", False, "Expired", "The grant has expired")
        elif int(status["redemptions"]) >= allowed:
            set_condition(
                grant, "Usable", False, "RedemptionsUsed",
                "The grant's only redemption has been used" if allowed == 1
                else f"All {allowed} redemptions of the grant have been used",
            )
        else:
            set_condition(grant, "Usable", True, "Usable", "OK")
            # Wake up at expiry, so the status turns honest without anyone asking.
            self._schedule(remaining + 0.05, grant["metadata"]["name"])
