"""``skupper system controller``: the site controller in a cluster (its composition root).

The same reconcilers and reconcile loop as the local daemon (Site, AccessGrant, Link,
Listener, Connector), plus the AccessToken reconciler, over the Kubernetes store; the same
link access (router listeners and the grant server), link manager and service router.
What differs is process concerns:

- configuration: in-cluster service account (or ``--kubeconfig``/``--context`` when run
  outside the cluster, as the tests do), the namespace from ``-n`` or
  ``SKUPPER_NAMESPACE``;
- the Lease ``skupper-controller``: taken before reconciling (one active controller per
  namespace, even with two pods during a rollout) and renewed every few seconds; the CLI
  reads it to know a controller runs. Losing it ends the process (the Deployment starts
  a new one); a clean stop releases it;
- the advertised host: ``SKUPPER_LINK_ACCESS_HOST``, else the skupper-router Service's
  load-balancer address, else its cluster DNS name (a Site's ``--link-access-host``
  wins over all of these);
- ports: the local daemon's rule (first free at or above 55671, 45671, 9090), which in a
  pod gives exactly those; chosen ports are remembered in ``SKUPPER_RUNTIME_DIR``.

Must not import cli.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from skupper.base.errors import SkupperError
from skupper.controller.loop import Reconcile
from skupper.controller.token import TokenReconciler
from skupper.daemon.site_runtime import SiteRuntime
from skupper.platforms.kubernetes import (
    LEASE_DURATION_SECONDS,
    LEASE_NAME,
    LEASE_RENEW_SECONDS,
    connect,
    lease_alive,
    load_config,
    read_lease,
)

log = logging.getLogger("skupper.controller")

ROUTER_SERVICE = "skupper-router"
# How long to wait for the lease held by another controller before asking again.
LEASE_RETRY_SECONDS = 2.0


def _micro_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LostLease(Exception):
    """Another controller holds the lease now: this one must stop reconciling."""


class LeaderLease:
    """The coordination.k8s.io Lease that makes one controller active, and shows it alive."""

    def __init__(self, client: Any, namespace: str, identity: str,
                 duration: int = LEASE_DURATION_SECONDS) -> None:
        self._client = client
        self._namespace = namespace
        self.identity = identity
        self._duration = duration
        self._version: str | None = None

    async def acquire(self) -> None:
        """Wait until this controller holds the lease."""
        from lightkube.core.exceptions import ApiError
        from lightkube.resources.coordination_v1 import Lease

        waiting_logged = False
        while True:
            current = await read_lease(self._client, self._namespace)
            now = _micro_now()
            try:
                if current is None:
                    created = await self._client.create(Lease.from_dict({
                        "metadata": {"name": LEASE_NAME, "namespace": self._namespace},
                        "spec": {"holderIdentity": self.identity,
                                 "leaseDurationSeconds": self._duration,
                                 "acquireTime": now, "renewTime": now,
                                 "leaseTransitions": 0}}))
                    self._version = created.metadata.resourceVersion
                    return
                spec = current.setdefault("spec", {})
                holder = spec.get("holderIdentity")
                if holder in (None, "", self.identity) or not lease_alive(current):
                    if holder != self.identity:
                        spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
                        spec["acquireTime"] = now
                    spec.update(holderIdentity=self.identity, renewTime=now,
                                leaseDurationSeconds=self._duration)
                    replaced = await self._client.replace(Lease.from_dict(current))
                    self._version = replaced.metadata.resourceVersion
                    return
            except ApiError as exc:
                if exc.status.code not in (409,):  # 409: another candidate was faster
                    raise
            if not waiting_logged:
                log.info("lease %s is held by %s; waiting", LEASE_NAME,
                         (current or {}).get("spec", {}).get("holderIdentity"))
                waiting_logged = True
            await asyncio.sleep(LEASE_RETRY_SECONDS)

    async def renew(self) -> None:
        """Renew every LEASE_RENEW_SECONDS; raise LostLease when someone else took it."""
        from lightkube.core.exceptions import ApiError
        from lightkube.resources.coordination_v1 import Lease

        while True:
            await asyncio.sleep(LEASE_RENEW_SECONDS)
            current = await read_lease(self._client, self._namespace)
            if current is None or (current.get("spec") or {}).get(
                    "holderIdentity") != self.identity:
                raise LostLease(f"lease {LEASE_NAME} was taken by another controller")
            current["spec"]["renewTime"] = _micro_now()
            try:
                replaced = await self._client.replace(Lease.from_dict(current))
            except ApiError as exc:
                if exc.status.code == 409:
                    continue  # someone touched it; read again next round
                raise
            self._version = replaced.metadata.resourceVersion

    async def release(self) -> None:
        from lightkube.resources.coordination_v1 import Lease

        with contextlib.suppress(Exception):
            current = await read_lease(self._client, self._namespace)
            if current and (current.get("spec") or {}).get("holderIdentity") == self.identity:
                current["spec"]["holderIdentity"] = ""
                await self._client.replace(Lease.from_dict(current))


async def advertised_host(client: Any, namespace: str) -> str:
    """SKUPPER_LINK_ACCESS_HOST, else the router Service's load balancer, else its DNS name."""
    configured = os.environ.get("SKUPPER_LINK_ACCESS_HOST")
    if configured:
        return configured
    from lightkube.resources.core_v1 import Service

    with contextlib.suppress(Exception):
        service = await client.get(Service, ROUTER_SERVICE, namespace=namespace)
        ingress = (service.status.loadBalancer.ingress or []) if service.status and (
            service.status.loadBalancer) else []
        for entry in ingress:
            if entry.hostname or entry.ip:
                return str(entry.hostname or entry.ip)
    return f"{ROUTER_SERVICE}.{namespace}.svc.cluster.local"


async def serve(namespace: str, kubeconfig: str | None, context: str | None) -> None:
    from skupper.store.kube import KubeSecretStore, KubeStore

    config = load_config(kubeconfig, context)
    client = connect(config, namespace)
    store = KubeStore(client, namespace, owns_client=False)
    secrets = KubeSecretStore(client, namespace)
    try:
        await store.list("Site")  # the CRDs are installed and the API answers: else one line
        identity = os.environ.get("SKUPPER_CONTROLLER_ID") or (
            f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}")
        lease = LeaderLease(client, namespace, identity)
        await lease.acquire()
        log.info("controller %s leads namespace %s", identity, namespace)
        # The site reconciler reads the advertised host from the environment.
        os.environ["SKUPPER_LINK_ACCESS_HOST"] = await advertised_host(client, namespace)
        await _run(store, secrets, namespace, lease)
    finally:
        store.close()
        await client.close()


async def _run(store: Any, secrets: Any, namespace: str, lease: LeaderLease) -> None:
    runtime_dir = Path(os.environ.get("SKUPPER_RUNTIME_DIR") or tempfile.gettempdir())
    runtime_dir.mkdir(parents=True, exist_ok=True)

    def add_tokens(site: SiteRuntime) -> dict[str, Reconcile]:
        async def site_name() -> str | None:
            current = await site.current_site()
            return None if current is None else str(current["metadata"]["name"])

        return {"AccessToken": TokenReconciler(store, secrets, site_name).reconcile}

    runtime = SiteRuntime(store, secrets, namespace,
                          runtime_dir / f"skupper-{namespace}-ports.json", extra=add_tokens,
                          platform="kubernetes")
    try:
        # A lost lease ends the run like a crashed controller: the Deployment restarts us.
        await runtime.run({"lease": lease.renew()})
    finally:
        await lease.release()
        log.info("controller stopped")


def main(namespace: str | None, kubeconfig: str | None, context: str | None) -> int:
    """Run until SIGTERM; 0 on a clean stop, 1 with one log line on a fatal error."""
    from skupper.daemon import logs

    logs.configure_stream(sys.stderr)  # one escaped line per record, rate-limited
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # one line per API request
    from skupper.platforms.kubeconfig import context_namespace

    chosen = namespace or os.environ.get("SKUPPER_NAMESPACE") or context_namespace(
        kubeconfig, context)
    from skupper.daemon import event_loop

    try:
        loop_kind = event_loop.chosen()
        log.info("controller starting for namespace %s (pid %d, event loop %s)", chosen,
                 os.getpid(), loop_kind)
        event_loop.run(serve(chosen, kubeconfig, context), loop_kind)
    except SkupperError as exc:
        log.error("%s", exc.line())
        return 1
    except LostLease as exc:
        log.error("%s; stopping", exc)
        return 1
    return 0
