"""The AccessGrant reconciler: code, URL, CA and expiry; an honest Ready condition."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from skupper.base.durations import parse_duration
from skupper.controller.runtime import LinkAccessRuntime
from skupper.grants.codes import generate_code
from skupper.resources import Resource
from skupper.resources.model import format_rfc3339, now_rfc3339, parse_rfc3339
from skupper.resources.status import derive_ready, set_condition
from skupper.store.interface import NotFound, Store

log = logging.getLogger(__name__)

DEFAULT_EXPIRATION_WINDOW = "15m"
GRANT_REQUIRED = ("Processed", "Resolved", "Usable")


def expiration_time(grant: Resource) -> datetime:
    """When the grant stops being redeemable: creation time plus the window."""
    window = parse_duration(grant["spec"].get("expirationWindow") or DEFAULT_EXPIRATION_WINDOW)
    created = parse_rfc3339(grant["metadata"].get("creationTimestamp") or now_rfc3339())
    return created + timedelta(seconds=window)


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
        # schedule(delay, name): reconcile the grant again later (at its expiry).
        self._schedule = schedule
        self._now = now

    async def reconcile(self, name: str) -> None:
        try:
            grant = await self._store.get("AccessGrant", name)
        except NotFound:
            return
        before = repr(grant.get("status"))
        self._update(grant)
        if repr(grant.get("status")) != before:
            await self._store.update_status(grant)

    def _update(self, grant: Resource) -> None:
        spec = grant.setdefault("spec", {})
        status = grant.setdefault("status", {})
        try:
            expires = expiration_time(grant)
            allowed = int(spec.get("redemptionsAllowed") or 1)
            if allowed < 1:
                raise ValueError("redemptionsAllowed must be at least 1")
        except (ValueError, TypeError) as exc:
            set_condition(grant, "Processed", False, "Error", f"Invalid grant: {exc}")
            derive_ready(grant, GRANT_REQUIRED)
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
        remaining = (expires - self._now()).total_seconds()
        if remaining <= 0:
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
        derive_ready(grant, GRANT_REQUIRED)
