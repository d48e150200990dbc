"""The Kubernetes platform as the CLI sees it: the API server holds the state.

Resources live in the namespace as custom resources (``store.kube``); the controller
runs in the cluster (``deploy/``, ``skupper system controller``) and holds the Lease
``skupper-controller``, renewing it every few seconds: a held, fresh lease is what
"the controller is running" means here. There is no daemon to start or stop from the
CLI. lightkube is imported only inside these methods, never by the local platform.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from skupper.base.errors import SkupperError
from skupper.platforms.kubeconfig import in_cluster, kubeconfig_path, no_context

if TYPE_CHECKING:
    from lightkube import AsyncClient
    from lightkube.config.kubeconfig import SingleConfig

    from skupper.store.kube import KubeSecretStore, KubeStore

LEASE_NAME = "skupper-controller"
# The controller renews its lease this often and claims it for LEASE_DURATION_SECONDS;
# a lease not renewed within that (plus CLOCK_SKEW_SECONDS between machines) is dead.
LEASE_RENEW_SECONDS = 3.0
LEASE_DURATION_SECONDS = 15
CLOCK_SKEW_SECONDS = 5.0
# While a command waits, the lease is read again this often (one GET).
LIVENESS_POLL_SECONDS = 2.0
# The API server answers (or refuses) within this, or the command says it is unreachable.
API_TIMEOUT_SECONDS = 10.0

_INSTALL_HINT = 'Install it with "kubectl apply -f deploy/ -n {ns}" (see the README)'


def load_config(kubeconfig: str | None, context: str | None) -> SingleConfig:
    """lightkube's configuration for the chosen kubeconfig and context, or in-cluster."""
    from lightkube.config.kubeconfig import KubeConfig
    from lightkube.core.exceptions import ConfigError

    path = kubeconfig_path(kubeconfig)
    try:
        if path is None:
            named = [item for item in os.environ.get("KUBECONFIG", "").split(os.pathsep) if item]
            if named and not in_cluster():
                raise SkupperError(
                    f"No kubeconfig at {os.pathsep.join(named)}",
                    "the file KUBECONFIG names does not exist" if len(named) == 1
                    else "none of the files KUBECONFIG names exists",
                    "Fix or unset KUBECONFIG, or point --kubeconfig at a kubeconfig file.",
                )
            if not in_cluster():
                raise SkupperError(
                    "No kubeconfig found",
                    "neither --kubeconfig, KUBECONFIG nor ~/.kube/config names one, and this "
                    "is not a pod in a cluster",
                    "Point --kubeconfig at one, or use --platform systemd for a local site.",
                )
            config = KubeConfig.from_service_account().get()
        else:
            config = KubeConfig.from_file(path).get(context_name=context)
    except ConfigError as exc:
        if context and "not found" in str(exc):
            raise no_context(context, path or "in-cluster") from None
        raise SkupperError(f"Cannot use the kubeconfig {path}", str(exc)) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise SkupperError(f"Cannot use the kubeconfig {path}",
                           f"it is incomplete ({exc})") from None
    if config is None:  # only when no context is set and no default is given
        raise SkupperError(f"Cannot use the kubeconfig {path}", "it sets no current context",
                           "Choose one with --context.")
    return config


def connect(config: SingleConfig, namespace: str) -> AsyncClient:
    import httpx2
    from lightkube import AsyncClient

    return AsyncClient(config, namespace=namespace,
                       timeout=httpx2.Timeout(API_TIMEOUT_SECONDS), field_manager="skupper")


def lease_alive(lease: dict[str, Any] | None, now: datetime | None = None) -> bool:
    """Whether a controller holds ``lease`` and renewed it recently."""
    if not lease:
        return False
    spec = lease.get("spec") or {}
    renewed = spec.get("renewTime")
    if not spec.get("holderIdentity") or not renewed:
        return False
    moment = datetime.fromisoformat(str(renewed).replace("Z", "+00:00"))
    duration = float(spec.get("leaseDurationSeconds") or LEASE_DURATION_SECONDS)
    limit = moment + timedelta(seconds=duration + CLOCK_SKEW_SECONDS)
    return (now or datetime.now(UTC)) < limit


async def read_lease(client: AsyncClient, namespace: str) -> dict[str, Any] | None:
    from lightkube.core.exceptions import ApiError
    from lightkube.resources.coordination_v1 import Lease

    try:
        lease = await client.get(Lease, LEASE_NAME, namespace=namespace)
    except ApiError as exc:
        if exc.status.code == 404:
            return None
        raise
    plain: dict[str, Any] = lease.to_dict()
    return plain


class KubernetesPlatform:
    name = "kubernetes"
    # Its API client is asynchronous: commands reach the cluster through open_store().
    has_blocking_store = False

    def __init__(self, namespace: str, context: str | None = None,
                 kubeconfig: str | None = None) -> None:
        self.namespace = namespace
        self.config = load_config(kubeconfig, context)
        self.server = str(self.config.cluster.server)
        self._client: AsyncClient | None = None
        self._running: bool | None = None
        self._poller: asyncio.Task[None] | None = None

    # --- what the CLI's session uses ---------------------------------------------------

    def client(self) -> AsyncClient:
        if self._client is None:
            self._client = connect(self.config, self.namespace)
        return self._client

    def has_state(self) -> bool:
        return True  # the cluster holds it; "no site" is found by listing Sites

    def open_store(self) -> KubeStore:
        from skupper.store.kube import KubeStore

        return KubeStore(self.client(), self.namespace, owns_client=False)

    def open_secrets(self) -> KubeSecretStore:
        from skupper.store.kube import KubeSecretStore

        return KubeSecretStore(self.client(), self.namespace)

    async def prepare(self) -> None:
        """Check the API server and the CRDs now (one clear error), then follow the lease."""
        from skupper.store.kube import KubeStore

        await KubeStore(self.client(), self.namespace, owns_client=False).list("Site")
        self._running = await self._lease_alive()
        self._poller = asyncio.create_task(self._poll(), name="controller-lease")

    async def _lease_alive(self) -> bool:
        from skupper.store.kube import _Api

        api = _Api(self.client(), self.namespace)
        try:
            return lease_alive(await api.call("Lease", LEASE_NAME,
                                              read_lease(self.client(), self.namespace)))
        except SkupperError:
            raise
        except Exception:  # refused (RBAC) or odd: say "not running" rather than crash
            return False

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(LIVENESS_POLL_SECONDS)
            with contextlib.suppress(Exception):
                self._running = await self._lease_alive()

    async def aclose(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        if self._client is not None:
            await self._client.close()
            self._client = None

    def running(self) -> bool:
        if self._running is None:  # outside a session: ask once
            self._running = asyncio.run(self._check_once())
        return self._running

    async def _check_once(self) -> bool:
        try:
            return await self._lease_alive()
        finally:
            await self.aclose()

    def start(self) -> None:
        """Nothing to start: the controller runs in the cluster (see ``running``)."""

    def stop(self, *, remove_unit: bool = False) -> bool:
        return False  # the controller is the cluster's to stop (scale its Deployment)

    def remove_state(self) -> None:
        asyncio.run(self._remove_state())

    async def _remove_state(self) -> None:
        """Delete the namespace's skupper resources and the Secrets skupper made."""
        from skupper.resources.model import KINDS
        from skupper.store.interface import NotFound
        from skupper.store.kube import KubeSecretStore, KubeStore

        try:
            store = KubeStore(self.client(), self.namespace, owns_client=False)
            secrets = KubeSecretStore(self.client(), self.namespace)
            for kind in ("Site", *[k for k in KINDS if k != "Site"]):
                for resource in await store.list(kind):
                    with contextlib.suppress(NotFound):
                        await store.delete(kind, resource["metadata"]["name"])
            for name in await secrets.names():
                with contextlib.suppress(NotFound):
                    await secrets.delete(name)
        finally:
            await self.aclose()

    # --- words for the CLI ------------------------------------------------------------

    @property
    def log_file(self) -> str:
        return f"kubectl logs deployment/skupper-controller -n {self.namespace}"

    def default_link_access_host(self) -> None:
        """The controller advertises its Service's address: nothing to check here."""
        return None

    def observer_file(self) -> None:
        """The observer runs in the controller's pod: no file of it on this machine."""
        return None

    @property
    def stopped_message(self) -> str:
        return "the Skupper controller stopped renewing its lease"

    def not_running_error(self) -> SkupperError:
        return SkupperError(
            "The Skupper controller is not running",
            f'no controller holds the lease "{LEASE_NAME}" in namespace "{self.namespace}"',
            _INSTALL_HINT.format(ns=self.namespace)
            + f', or see "kubectl get deployment skupper-controller -n {self.namespace}".',
        )
