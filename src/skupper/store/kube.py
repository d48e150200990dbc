"""Resources and secrets of one namespace in the Kubernetes API, through lightkube.

The same ``Store`` contract as the SQLite backend, kept by the API server instead:

- the skupper.io/v2alpha1 kinds are custom resources with the status subresource, so
  ``update`` is a PUT of the object (status ignored) and ``update_status`` a PUT of
  ``/status`` (nothing but status); both send ``metadata.resourceVersion`` and the API
  server answers 409 when it is stale (optimistic concurrency). Without a version the
  write is last-writer-wins: read the current version, write, retry on 409;
- ``mutate_status`` reads, applies ``change`` to a copy, and writes status with the
  version it read; a 409 means someone wrote in between, so it reads again and calls
  ``change`` again (so a redemption is never counted on a stale count, never twice);
- store versions are the API server's resourceVersions. Kubernetes calls them opaque;
  every API server backed by etcd issues etcd's revision, a cluster-wide integer, and
  this store relies on that (a non-integer version is reported, not guessed at);
- ``watch`` resumes from a version; when the server has compacted it away (410), the
  watch lists the kind again and goes on from the list's version (level-triggered,
  like the SQLite store resuming past its kept events).

Secrets are core/v1 Secrets labelled ``app.kubernetes.io/managed-by: skupper``.

Errors are translated at this boundary: 404/409 become NotFound/AlreadyExists/Conflict;
a kind the server does not serve (the CRDs are not installed), an unreachable server,
and refused credentials become ``KubeApiError``, a one-line user error. lightkube is
imported only here and in the Kubernetes platform, never on the local platform's paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, TypeVar, cast

import httpx2
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.core_v1 import Secret

from skupper.base.errors import SkupperError
from skupper.resources.model import GROUP, VERSION, Resource, resource_key, valid_name
from skupper.store.interface import (
    AlreadyExists,
    Conflict,
    EventType,
    NotFound,
    StoreError,
    WatchEvent,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# The plural (URL) name of each kind, as upstream's CRDs declare it.
PLURALS = {
    "Site": "sites",
    "AccessGrant": "accessgrants",
    "AccessToken": "accesstokens",
    "Link": "links",
    "RouterAccess": "routeraccesses",
    "Listener": "listeners",
    "Connector": "connectors",
}
MANAGED_BY = {"app.kubernetes.io/managed-by": "skupper"}

# mutate_status re-reads and retries on 409 this many times. Each retry means another
# writer won, so the loop ends when writers stop colliding; the bound only turns a
# livelock into an error instead of a hang.
MUTATE_ATTEMPTS = 100
# Jittered pause between retries, so colliding writers spread out.
MUTATE_BACKOFF_SECONDS = 0.005
# The API server closes a watch after this long; lightkube reopens it from the last
# version seen. Short enough that a silently dropped connection is noticed.
WATCH_SERVER_TIMEOUT_SECONDS = 240
# Pause before reopening a watch that failed (server restarting, network blip).
WATCH_RETRY_SECONDS = 1.0
# Every request but a watch: connect, read and write within this.
REQUEST_TIMEOUT_SECONDS = 10.0

_Resources = list[Resource]  # inside the class, "list" is the method
_DOCS_INSTALL = 'Install them with "kubectl apply -f deploy/" (see the README)'


class KubeApiError(SkupperError, StoreError):
    """The API server cannot be used: unreachable, refusing us, or lacking the CRDs."""


def crds_missing(kind: str, server: str) -> KubeApiError:
    return KubeApiError(
        "The Skupper CRDs are not installed in the cluster",
        f"the API server at {server} does not serve {PLURALS.get(kind, kind)}.{GROUP}/"
        f"{VERSION}",
        _DOCS_INSTALL + ".",
    )


def unreachable(server: str, exc: BaseException) -> KubeApiError:
    why = str(exc) or type(exc).__name__
    return KubeApiError(
        f"Cannot reach the Kubernetes API server at {server}",
        why,
        "Check --kubeconfig and --context, and that the cluster is running.",
    )


def resource_class(kind: str) -> Any:
    """lightkube's generic class for a skupper.io/v2alpha1 kind."""
    plural = PLURALS.get(kind) or kind.lower() + ("es" if kind.endswith("s") else "s")
    return create_namespaced_resource(GROUP, VERSION, kind, plural)


class _Api:
    """Calls through lightkube, with errors translated for this project."""

    def __init__(self, client: AsyncClient, namespace: str) -> None:
        self.client = client
        self.namespace = namespace
        self.server = str(client.config.cluster.server)

    def translate(self, exc: Exception, kind: str, name: str = "") -> Exception:
        if isinstance(exc, ApiError):
            status = exc.status
            code = int(status.code or exc.response.status_code)
            details = status.details
            if code == 404:
                if details is not None and details.kind == "namespaces":
                    return KubeApiError(f'Namespace "{self.namespace}" does not exist',
                                        str(status.message),
                                        "Create it, or choose another with -n.")
                if details is not None and details.name:
                    return NotFound(kind, name or details.name)
                return crds_missing(kind, self.server)
            if code == 409 and status.reason == "AlreadyExists":
                return AlreadyExists(kind, name)
            if code == 409:
                return Conflict(str(status.message))
            if code in (401, 403):
                return KubeApiError(
                    f"The Kubernetes API server refused access to {PLURALS.get(kind, kind)} "
                    f'in namespace "{self.namespace}"',
                    str(status.message),
                    "Check the credentials of your kubeconfig and the RBAC rules (deploy/).",
                )
            return KubeApiError(f"The Kubernetes API server refused a {kind} request",
                                f"{code} {status.reason}: {status.message}")
        if isinstance(exc, httpx2.TransportError):
            return unreachable(self.server, exc)
        return exc

    async def call(self, kind: str, name: str, coro: Any) -> Any:
        try:
            return await coro
        except (ApiError, httpx2.TransportError) as exc:
            raise self.translate(exc, kind, name) from exc


def _plain(obj: Any) -> Resource:
    """A lightkube generic object as the plain JSON dict the rest of the project uses."""
    plain: Resource = json.loads(json.dumps(obj))
    return plain


def version_of(resource: Resource) -> int:
    text = str(resource.get("metadata", {}).get("resourceVersion") or "0")
    try:
        return int(text)
    except ValueError:
        raise StoreError(f"resourceVersion {text!r} is not an integer: this API server is "
                         "not backed by etcd, which this store needs") from None


class KubeStore:
    """The ``Store`` of one namespace, kept by the Kubernetes API server."""

    def __init__(self, client: AsyncClient, namespace: str, *, owns_client: bool = True,
                 kinds: tuple[str, ...] | None = None) -> None:
        from skupper.resources.model import KINDS

        self._api = _Api(client, namespace)
        self._owns_client = owns_client
        self._kinds = kinds or KINDS
        self._closed = asyncio.Event()
        self._closing: asyncio.Task[None] | None = None

    @property
    def namespace(self) -> str:
        return self._api.namespace

    @property
    def server(self) -> str:
        return self._api.server

    # --- Store protocol -------------------------------------------------------------------

    async def get(self, kind: str, name: str) -> Resource:
        res = resource_class(kind)
        found = await self._api.call(kind, name, self._api.client.get(
            res, name, namespace=self.namespace))
        return _plain(found)

    async def list(self, kind: str) -> _Resources:
        return (await self._list(kind))[1]

    async def _list(self, kind: str) -> tuple[int, _Resources]:
        listing = self._api.client.list(resource_class(kind), namespace=self.namespace)

        async def collect() -> _Resources:
            return [_plain(item) async for item in listing]

        items = await self._api.call(kind, "", collect())
        items.sort(key=lambda r: r["metadata"]["name"])
        version = version_of({"metadata": {"resourceVersion": listing.resourceVersion}})
        return version, items

    async def create(self, resource: Resource) -> Resource:
        body = _plain(resource)
        kind, name = resource_key(body)
        body["metadata"]["namespace"] = self.namespace
        for field in ("resourceVersion", "uid", "generation", "creationTimestamp"):
            body["metadata"].pop(field, None)
        status = body.pop("status", None)
        res = resource_class(kind)
        created = _plain(await self._api.call(kind, name, self._api.client.create(res(body))))
        if status:  # the status subresource drops status on create; the contract keeps it
            created["status"] = status
            created = await self.update_status(created)
        return created

    async def update(self, resource: Resource) -> Resource:
        body = _plain(resource)
        kind, name = resource_key(body)
        res = resource_class(kind)
        return await self._replace(kind, name, body, lambda b: self._api.client.replace(res(b)))

    async def update_status(self, resource: Resource) -> Resource:
        body = _plain(resource)
        kind, name = resource_key(body)
        res = resource_class(kind)
        return await self._replace(
            kind, name, body,
            lambda b: self._api.client.replace(res.Status(b), name, namespace=self.namespace))

    async def _replace(self, kind: str, name: str, body: Resource,
                       put: Callable[[Resource], Any]) -> Resource:
        body["metadata"]["namespace"] = self.namespace
        blind = not body["metadata"].get("resourceVersion")
        for _ in range(MUTATE_ATTEMPTS):
            if blind:  # last writer wins, as in the SQLite store: write over "now"
                current = await self.get(kind, name)
                body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            try:
                return _plain(await self._api.call(kind, name, put(body)))
            except Conflict:
                if not blind:
                    raise
                await _pause()
        raise Conflict(f'{kind} "{name}": too many concurrent writers')

    async def delete(self, kind: str, name: str) -> None:
        await self._api.call(kind, name, self._api.client.delete(
            resource_class(kind), name, namespace=self.namespace))

    async def mutate_status(self, kind: str, name: str, change: Callable[[Resource], T]) -> T:
        """Read, change, write status with the version read; on 409 do it all again.

        ``change`` sees the current object each time, so whatever it decides (a
        redemption's count) is decided on the state its write replaces.
        """
        res = resource_class(kind)
        for _ in range(MUTATE_ATTEMPTS):
            stored = await self.get(kind, name)
            work = copy.deepcopy(stored)
            result = change(work)  # may raise: nothing is written
            if work.get("status") == stored.get("status"):
                return result
            body = copy.deepcopy(stored)
            if "status" in work:
                body["status"] = json.loads(json.dumps(work["status"]))  # TypeError if not JSON
            else:
                body.pop("status", None)
            try:
                await self._api.call(kind, name, self._api.client.replace(
                    res.Status(body), name, namespace=self.namespace))
            except Conflict:
                await _pause()
                continue
            return result
        raise Conflict(f'{kind} "{name}": status kept changing under {MUTATE_ATTEMPTS} attempts')

    async def current_version(self) -> int:
        # A list's resourceVersion is the cluster-wide revision it was read at.
        return (await self._list(self._kinds[0]))[0]

    async def watch(
        self, kind: str | None = None, since: int = 0
    ) -> AsyncGenerator[WatchEvent, None]:
        """Events after ``since`` for ``kind`` (all of this store's kinds when None).

        Ends when the store is closed. Events of different kinds come from different
        watch streams: each kind's events are in order, the kinds interleave.
        """
        kinds = [kind] if kind is not None else list(self._kinds)
        if len(kinds) == 1:
            async for event in self._watch_kind(kinds[0], since):
                yield event
            return
        queue: asyncio.Queue[WatchEvent | BaseException] = asyncio.Queue()

        async def pump(one: str) -> None:
            try:
                async for event in self._watch_kind(one, since):
                    await queue.put(event)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # handed to the consumer, who raises it
                await queue.put(exc)

        tasks = [asyncio.create_task(pump(one), name=f"kube-watch-{one}") for one in kinds]
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _watch_kind(self, kind: str, since: int) -> AsyncIterator[WatchEvent]:
        res = resource_class(kind)
        version = since
        while not self._closed.is_set():
            stream = self._api.client.watch(
                res, namespace=self.namespace,
                resource_version=str(version) if version > 0 else "0",
                server_timeout=WATCH_SERVER_TIMEOUT_SECONDS,
            )
            try:
                async for type_, obj in _until(stream, self._closed):
                    if type_ not in ("ADDED", "MODIFIED", "DELETED"):
                        continue  # BOOKMARK: lightkube already resumes from its version
                    resource = _plain(obj)
                    version = max(version, version_of(resource))
                    yield WatchEvent(cast(EventType, type_), resource, version_of(resource))
                return  # closed
            except ApiError as exc:
                if exc.status.code == 410:  # compacted: relist, go on from the list's version
                    log.info("watch of %s expired at %d; listing again", kind, version)
                    version, items = await self._list(kind)
                    for item in items:
                        yield WatchEvent("MODIFIED", item, version_of(item))
                    continue
                raise self._api.translate(exc, kind) from exc
            except httpx2.TransportError as exc:
                log.warning("watch of %s failed (%s); reopening", kind, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closed.wait(), WATCH_RETRY_SECONDS)

    def close(self) -> None:
        """Stop watches; release the connections (now if no loop runs, else soon)."""
        if self._closed.is_set():
            return
        self._closed.set()
        if not self._owns_client:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._closing = loop.create_task(self._api.client.close())

    async def aclose(self) -> None:
        self.close()
        if self._closing is not None:
            await self._closing


async def _until(stream: Any, closed: asyncio.Event) -> AsyncIterator[Any]:
    """The items of ``stream`` until ``closed`` is set (a watch may be silent for long)."""
    iterator = stream.__aiter__()
    closing = asyncio.ensure_future(closed.wait())
    step: asyncio.Future[Any] | None = None
    try:
        while True:
            step = asyncio.ensure_future(iterator.__anext__())
            done, _ = await asyncio.wait({step, closing}, return_when=asyncio.FIRST_COMPLETED)
            if step not in done:
                return
            try:
                item = step.result()
            except StopAsyncIteration:
                return
            step = None
            yield item
    finally:
        closing.cancel()
        if step is not None:  # closed, or our consumer was cancelled while we waited
            step.cancel()
            with contextlib.suppress(BaseException):
                await step
        with contextlib.suppress(Exception):
            await iterator.aclose()


async def _pause() -> None:
    await asyncio.sleep(random.uniform(0, MUTATE_BACKOFF_SECONDS))


class KubeSecretStore:
    """The ``SecretStore`` of one namespace: core/v1 Secrets that skupper manages."""

    def __init__(self, client: AsyncClient, namespace: str) -> None:
        self._api = _Api(client, namespace)

    async def get(self, name: str) -> dict[str, bytes]:
        import base64

        found = await self._api.call("Secret", name, self._api.client.get(
            Secret, name, namespace=self._api.namespace))
        data = found.data or {}
        return {key: base64.b64decode(value) for key, value in data.items()}

    async def exists(self, name: str) -> bool:
        try:
            await self.get(name)
        except NotFound:
            return False
        return True

    async def put(self, name: str, data: dict[str, bytes]) -> None:
        import base64

        from lightkube.models.meta_v1 import ObjectMeta

        if not valid_name(name):
            raise ValueError(f"invalid secret name {name!r}")
        encoded = {key: base64.b64encode(value).decode() for key, value in data.items()}
        tls = "tls.crt" in data and "tls.key" in data
        secret = Secret(
            metadata=ObjectMeta(name=name, namespace=self._api.namespace,
                                labels=dict(MANAGED_BY)),
            type="kubernetes.io/tls" if tls else "Opaque",
            data=encoded,
        )
        try:
            await self._api.call("Secret", name, self._api.client.create(secret))
            return
        except AlreadyExists:
            pass
        for _ in range(MUTATE_ATTEMPTS):  # replace what is there, whoever wrote it last
            current = await self._api.call("Secret", name, self._api.client.get(
                Secret, name, namespace=self._api.namespace))
            current.data = encoded
            current.stringData = None
            try:
                await self._api.call("Secret", name, self._api.client.replace(current))
                return
            except Conflict:
                await _pause()
        raise Conflict(f'Secret "{name}": too many concurrent writers')

    async def delete(self, name: str) -> None:
        await self._api.call("Secret", name, self._api.client.delete(
            Secret, name, namespace=self._api.namespace))

    async def names(self) -> list[str]:
        async def collect() -> list[str]:
            return [str(s.metadata.name) async for s in self._api.client.list(
                Secret, namespace=self._api.namespace, labels=dict(MANAGED_BY))
                if s.metadata is not None]

        return sorted(await self._api.call("Secret", "", collect()))
