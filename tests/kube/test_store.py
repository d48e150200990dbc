"""One Store contract, two backends: SQLite, and the Kubernetes API (lightkube over real HTTP
to the strict double). Then what only the Kubernetes store has: conflicts on the wire,
compacted watches, missing CRDs, an unreachable server, and Secrets."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest
from double import DoubleThread
from kubehelp import create_namespace, kubectl_apply, manifests, write_kubeconfig

from skupper.base.errors import SkupperError
from skupper.grants.redemption import Credential, RedemptionRequest, Refusal, redeem
from skupper.resources import new_resource
from skupper.resources.model import format_rfc3339
from skupper.store.interface import AlreadyExists, Conflict, NotFound, WatchEvent
from skupper.store.kube import KubeApiError, KubeSecretStore, KubeStore
from skupper.store.sqlite import SqliteStore

SPAWN = multiprocessing.get_context("spawn")
StoreFactory = Callable[[], contextlib.AbstractAsyncContextManager[Any]]


def _link(name: str) -> dict[str, Any]:
    # A Link the CRD accepts (spec.endpoints is required).
    return new_resource("Link", name, {"endpoints": [
        {"name": "inter-router", "host": "127.0.0.1", "port": "55671"}]})


def kube_client(kubeconfig: Path, namespace: str = "default") -> Any:
    from skupper.platforms.kubernetes import connect, load_config

    return connect(load_config(str(kubeconfig), None), namespace)


@contextlib.asynccontextmanager
async def kube_store(kubeconfig: Path, namespace: str = "default") -> AsyncIterator[KubeStore]:
    store = KubeStore(kube_client(kubeconfig, namespace), namespace)
    try:
        yield store
    finally:
        await store.aclose()


@pytest.fixture(params=["sqlite", "kube"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        @contextlib.asynccontextmanager
        async def sqlite() -> AsyncIterator[SqliteStore]:
            with SqliteStore(tmp_path / "ns.db") as store:
                yield store

        yield sqlite
        return
    with DoubleThread() as running:
        kubectl_apply(running.url, "default", manifests())
        config = write_kubeconfig(tmp_path / "kubeconfig", running.url)
        yield lambda: kube_store(config)
        assert running.call(lambda: list(running.api.pruned)) == []


# --- the shared contract ---------------------------------------------------------------------


def test_create_get_list_delete(backend: StoreFactory) -> None:
    async def main() -> None:
        async with backend() as store:
            start = await store.current_version()
            created = await store.create(new_resource("Site", "west", {"linkAccess": "default"}))
            meta = created["metadata"]
            assert meta["generation"] == 1
            assert int(meta["resourceVersion"]) > start
            assert len(meta["uid"]) == 36
            assert meta["creationTimestamp"].endswith("Z")
            assert await store.get("Site", "west") == created
            assert await store.current_version() == int(meta["resourceVersion"])
            with pytest.raises(AlreadyExists):
                await store.create(new_resource("Site", "west"))
            await store.create(new_resource("Site", "east"))
            assert [s["metadata"]["name"] for s in await store.list("Site")] == ["east", "west"]
            assert await store.list("AccessGrant") == []
            await store.delete("Site", "west")
            with pytest.raises(NotFound):
                await store.get("Site", "west")
            with pytest.raises(NotFound):
                await store.delete("Site", "west")
            with pytest.raises(ValueError):
                await store.create(new_resource("Site", "../bad"))

    asyncio.run(main())


def test_update_and_update_status(backend: StoreFactory) -> None:
    async def main() -> None:
        async with backend() as store:
            site = await store.create(new_resource("Site", "west", {"ha": False}))
            site["status"] = {"status": "Ready"}
            site = await store.update_status(site)
            assert site["metadata"]["generation"] == 1

            change = new_resource("Site", "west", {"ha": False})
            change["metadata"]["labels"] = {"a": "b"}
            change["status"] = {"status": "ignored"}
            site = await store.update(change)  # no resourceVersion: last writer wins
            assert site["metadata"]["generation"] == 1
            assert site["metadata"]["labels"] == {"a": "b"}
            assert site["status"] == {"status": "Ready"}

            site["spec"] = {"ha": True}
            site = await store.update(site)
            assert site["metadata"]["generation"] == 2

            stale_rv = str(int(site["metadata"]["resourceVersion"]) - 1)
            stale = dict(site, spec={"ha": "x"}, status={"status": "Pending"})
            site = await store.update_status(stale)
            assert site["spec"] == {"ha": True}
            assert site["status"] == {"status": "Pending"}

            old = dict(site, metadata=dict(site["metadata"], resourceVersion=stale_rv))
            with pytest.raises(Conflict):
                await store.update(old)
            with pytest.raises(Conflict):
                await store.update_status(old)

            version = await store.current_version()
            same = await store.update(await store.get("Site", "west"))
            assert same["metadata"]["resourceVersion"] == str(version)
            assert await store.current_version() == version
            with pytest.raises(NotFound):
                await store.update(new_resource("Site", "nope"))

    asyncio.run(main())


def _redeem_once(grant: dict[str, Any]) -> int:
    status = grant.setdefault("status", {})
    used = int(status.get("redemptions", 0))
    if used >= grant["spec"]["redemptionsAllowed"]:
        raise LookupError("used up")
    status["redemptions"] = used + 1
    return used + 1


def test_mutate_status(backend: StoreFactory) -> None:
    async def main() -> None:
        async with backend() as store:
            await store.create(new_resource("AccessGrant", "g", {"redemptionsAllowed": 1}))
            assert await store.mutate_status("AccessGrant", "g", _redeem_once) == 1
            before = await store.get("AccessGrant", "g")
            assert before["status"] == {"redemptions": 1}
            with pytest.raises(LookupError):
                await store.mutate_status("AccessGrant", "g", _redeem_once)

            def scribble_then_fail(grant: dict[str, Any]) -> None:
                grant["status"]["redemptions"] = 99
                raise KeyError("boom")

            with pytest.raises(KeyError):
                await store.mutate_status("AccessGrant", "g", scribble_then_fail)
            with pytest.raises(TypeError):
                await store.mutate_status("AccessGrant", "g",
                                          lambda g: g["status"].update(when=object()))
            assert await store.get("AccessGrant", "g") == before

            def touch_spec(grant: dict[str, Any]) -> str:
                grant["spec"] = {"redemptionsAllowed": 1000}
                grant["status"]["redemptions"] = 0
                return "done"

            assert await store.mutate_status("AccessGrant", "g", touch_spec) == "done"
            after = await store.get("AccessGrant", "g")
            assert after["spec"] == {"redemptionsAllowed": 1}
            assert after["status"] == {"redemptions": 0}
            with pytest.raises(NotFound):
                await store.mutate_status("AccessGrant", "nope", _redeem_once)

    asyncio.run(main())


async def _take(stream: Any, count: int) -> list[WatchEvent]:
    events: list[WatchEvent] = []
    async with asyncio.timeout(10), aclosing(stream) as events_stream:
        async for event in events_stream:
            events.append(event)
            if len(events) == count:
                break
    return events


def test_watch_and_resume(backend: StoreFactory) -> None:
    async def main() -> None:
        async with backend() as store:
            await store.create(new_resource("Site", "early"))
            since = await store.current_version()
            watcher = asyncio.create_task(_take(store.watch("Site", since=since), 3))
            await asyncio.sleep(0.2)
            await store.create(_link("l"))  # another kind: filtered out
            site = await store.update(new_resource("Site", "early", {"ha": True}))
            late = await store.create(new_resource("Site", "late"))
            await store.delete("Site", "early")
            events = await watcher
            assert [(e.type, e.resource["metadata"]["name"]) for e in events] == [
                ("MODIFIED", "early"), ("ADDED", "late"), ("DELETED", "early")]
            assert events[0].resource == site
            assert all(str(e.version) == e.resource["metadata"]["resourceVersion"]
                       for e in events)
            # Resume after the first event: what came later, of every kind.
            resumed = await _take(store.watch(None, since=events[0].version), 2)
            assert [(e.type, e.resource["metadata"]["name"]) for e in resumed] == [
                ("ADDED", "late"), ("DELETED", "early")]
            assert resumed[0].resource == late

    asyncio.run(main())


def test_mutate_status_is_exact_under_concurrent_writers(backend: StoreFactory) -> None:
    """8 writers, 25 attempts each, on a 100-use grant: exactly 100 counted."""

    async def main() -> None:
        async with backend() as store:
            await store.create(new_resource("AccessGrant", "grant", {"redemptionsAllowed": 100}))

        async def writer() -> int:
            won = 0
            async with backend() as mine:  # its own connection, as another process has
                for _ in range(25):
                    try:
                        await mine.mutate_status("AccessGrant", "grant", _redeem_once)
                    except LookupError:
                        continue
                    won += 1
            return won

        wins = await asyncio.gather(*(writer() for _ in range(8)))
        assert sum(wins) == 100
        async with backend() as store:
            final = await store.get("AccessGrant", "grant")
            assert final["status"]["redemptions"] == 100

    asyncio.run(main())


# --- Kubernetes only ---------------------------------------------------------------------------


@pytest.fixture
def kube(double: DoubleThread, tmp_path: Path) -> tuple[DoubleThread, Path]:
    return double, write_kubeconfig(tmp_path / "kubeconfig", double.url)


def _redeem_in_process(kubeconfig: str, attempts: int) -> int:
    async def main() -> int:
        won = 0
        async with kube_store(Path(kubeconfig)) as store:
            for _ in range(attempts):
                try:
                    await store.mutate_status("AccessGrant", "grant", _redeem_once)
                except LookupError:
                    continue
                won += 1
        return won

    return asyncio.run(main())


def test_exact_across_processes_with_real_conflicts(kube: tuple[DoubleThread, Path]) -> None:
    double, config = kube

    async def setup() -> None:
        async with kube_store(config) as store:
            await store.create(new_resource("AccessGrant", "grant", {"redemptionsAllowed": 60}))

    asyncio.run(setup())
    conflicts_before = double.call(lambda: double.api.conflicts)
    pool = SPAWN.Pool(4)
    try:
        wins = pool.starmap(_redeem_in_process, [(str(config), 25)] * 4)
    finally:
        pool.close()
        pool.join()
    assert sum(wins) == 60

    async def final() -> int:
        async with kube_store(config) as store:
            return int((await store.get("AccessGrant", "grant"))["status"]["redemptions"])

    assert asyncio.run(final()) == 60
    # The writers really collided on the wire, so the retries above were exercised.
    assert double.call(lambda: double.api.conflicts) > conflicts_before


def _live_grant(name: str, allowed: int) -> dict[str, Any]:
    from datetime import UTC, datetime, timedelta

    grant = new_resource("AccessGrant", name, {"redemptionsAllowed": allowed})
    grant["status"] = {"code": "Abcdefghijklmnopqrstuvw1", "redemptions": 0,
                       "expirationTime": format_rfc3339(datetime.now(UTC) + timedelta(hours=1))}
    return grant


CREDENTIAL = Credential(cert_pem=b"CERT", key_pem=b"KEY", serial=7)


@pytest.mark.parametrize(("allowed", "outcome"), [(2, "counted"), (1, "refused")])
def test_conflict_during_a_redemption_is_retried(
    kube: tuple[DoubleThread, Path], allowed: int, outcome: str
) -> None:
    """Another redemption lands between our read and our write: our write gets a real 409.

    The retry must decide again on the new count: with two uses, both are counted (none
    lost); with one, ours is refused (never counted twice, never over the limit).
    """
    double, config = kube
    interleaved: list[str] = []

    def competing_redemption(verb: str, kind: Any, namespace: Any, name: str) -> bool:
        if verb != "update" or kind.plural != "accessgrants" or interleaved:
            return False
        interleaved.append(name)
        stored = double.api._current(kind, namespace, name)
        stored["status"]["redemptions"] += 1  # what a competing grant server wrote
        double.api._write(kind, namespace, name, stored, "status", need_version=True)
        return True

    async def main() -> None:
        async with kube_store(config) as store:
            created = await store.create(_live_grant("g", allowed))
            uid = created["metadata"]["uid"]
            double.call(lambda: double.api.before_write.append(competing_redemption))
            request = RedemptionRequest(grant_id=uid, code=b"Abcdefghijklmnopqrstuvw1",
                                        name="link", subject="east")
            if outcome == "counted":
                assert await redeem(store, request, lambda _s, _g: CREDENTIAL) == CREDENTIAL
            else:
                with pytest.raises(Refusal) as refusal:
                    await redeem(store, request, lambda _s, _g: CREDENTIAL)
                assert (refusal.value.status, refusal.value.reason) == (
                    404, "No such access granted")
            final = await store.get("AccessGrant", "g")
            assert final["status"]["redemptions"] == allowed
            assert interleaved == ["g"]

    asyncio.run(main())


def test_watch_past_compacted_history_relists(tmp_path: Path) -> None:
    with DoubleThread(history_limit=3) as double:
        kubectl_apply(double.url, "default", manifests())
        config = write_kubeconfig(tmp_path / "kubeconfig", double.url)

        async def main() -> None:
            async with kube_store(config) as store:
                since = await store.current_version()
                for index in range(6):
                    await store.create(_link(f"l{index}"))
                events = await _take(store.watch("Link", since=since), 6)
                assert sorted(e.resource["metadata"]["name"] for e in events) == [
                    f"l{i}" for i in range(6)]
                # Then it goes on live from the list's version.
                nxt = asyncio.create_task(_take(store.watch("Link", since=since), 7))
                await asyncio.sleep(0.2)
                await store.create(_link("l6"))
                assert (await nxt)[-1].resource["metadata"]["name"] == "l6"

        asyncio.run(main())


def test_missing_crds_say_how_to_install(bare_double: DoubleThread, tmp_path: Path) -> None:
    config = write_kubeconfig(tmp_path / "kubeconfig", bare_double.url)

    async def main() -> None:
        async with kube_store(config) as store:
            with pytest.raises(KubeApiError) as error:
                await store.list("Site")
            line = error.value.line()
            assert "The Skupper CRDs are not installed in the cluster" in line
            assert "kubectl apply -f deploy/" in line

    asyncio.run(main())


def test_unreachable_server_is_one_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    config = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{port}")

    async def main() -> None:
        async with kube_store(config) as store:
            with pytest.raises(KubeApiError) as error:
                await store.get("Site", "west")
            assert error.value.line().startswith(
                f"Cannot reach the Kubernetes API server at http://127.0.0.1:{port}")
            assert isinstance(error.value, SkupperError)

    asyncio.run(main())


def test_missing_namespace(kube: tuple[DoubleThread, Path], tmp_path: Path) -> None:
    double, _ = kube
    config = write_kubeconfig(tmp_path / "other", double.url, "nowhere")

    async def main() -> None:
        async with kube_store(config, "nowhere") as store:
            with pytest.raises(KubeApiError, match='Namespace "nowhere" does not exist'):
                await store.create(new_resource("Site", "west"))

    asyncio.run(main())


def test_secret_store(kube: tuple[DoubleThread, Path]) -> None:
    double, config = kube
    create_namespace(double, "west")

    async def main() -> None:
        client = kube_client(config, "west")
        try:
            secrets = KubeSecretStore(client, "west")
            assert await secrets.names() == []
            assert not await secrets.exists("site-ca")
            with pytest.raises(NotFound):
                await secrets.get("site-ca")
            pem = {"tls.crt": b"CERT\n", "tls.key": b"KEY\n", "ca.crt": b"\x00\xff"}
            await secrets.put("site-ca", pem)
            assert await secrets.get("site-ca") == pem
            await secrets.put("site-ca", {"tls.crt": b"NEW", "tls.key": b"K", "hosts": b"h"})
            assert await secrets.get("site-ca") == {"tls.crt": b"NEW", "tls.key": b"K",
                                                    "hosts": b"h"}
            await secrets.put("other", {"x": b"1"})
            assert await secrets.names() == ["other", "site-ca"]
            await secrets.delete("other")
            assert await secrets.names() == ["site-ca"]
            with pytest.raises(NotFound):
                await secrets.delete("other")
        finally:
            await client.close()

    asyncio.run(main())
    stored = double.call(lambda: dict(double.api.objects["v1/secrets", "west", "site-ca"].raw))
    assert stored["type"] == "kubernetes.io/tls"
    assert stored["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "skupper"}
