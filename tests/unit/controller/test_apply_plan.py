"""``system apply`` over a real SQLite store and secret folders (controller.apply): the
words it plans, the checks it makes before writing, Link + Secret kept as a redemption
keeps its answer, and an AccessToken redeemed once however often it is applied."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from skupper.base.errors import SkupperError
from skupper.certs.issue import generate_ca, issue_certificate
from skupper.controller.apply import CONFIGURED, CREATED, UNCHANGED, Namespace, execute, plan
from skupper.controller.token import store_answer
from skupper.grants.client import parse_answer
from skupper.grants.redemption import Credential, answer_documents
from skupper.resources import new_resource
from skupper.resources.build import service_resource, site_resource
from skupper.resources.documents import DocumentError, parse, validate
from skupper.store.secrets import FileSecretStore
from skupper.store.sqlite import SqliteStore

SITE_CA = generate_ca("west site CA")
CLIENT = issue_certificate(SITE_CA, "east", usage="client")
OTHER = issue_certificate(generate_ca("another CA"), "east", usage="client")
ENDPOINTS = [{"name": "inter-router", "host": "127.0.0.1", "port": "55671", "group": "g"},
             {"name": "edge", "host": "127.0.0.1", "port": "45671", "group": "g"}]
GRANT_CA = generate_ca("west grant server CA").cert_pem.decode()
URL = "https://127.0.0.1:9090/0b8e6a2c-5a3f-4d3e-9c3b-2f6a3c1d9e7f"

Body = Callable[[SqliteStore, FileSecretStore, Namespace], Awaitable[Any]]


def _with_site(tmp_path: Path, body: Body) -> Any:
    async def main() -> Any:
        with SqliteStore(tmp_path / "store.db") as store:
            secrets = FileSecretStore(tmp_path / "secrets")
            await store.create(site_resource("east", "none", None))
            return await body(store, secrets, Namespace(store, secrets, "east"))

    return asyncio.run(main())


def _docs(*documents: dict[str, Any]) -> list[Any]:
    raw = yaml.safe_dump_all(documents).encode()
    return validate(parse(raw, "f.yaml"), "east", "f.yaml")


async def _no_site(_resource: dict[str, Any]) -> None:
    raise AssertionError("no Site is created here")


async def _apply(store: SqliteStore, secrets: FileSecretStore, here: Namespace,
                 documents: list[Any], post: Any = None) -> list[str]:
    lines: list[str] = []
    steps = await plan(documents, here, "f.yaml")
    await execute(steps, store, secrets, "east", _no_site, lines.append, post)
    return lines


def test_created_unchanged_configured(tmp_path: Path) -> None:
    listener = service_resource("Listener", "db", 5432)

    async def body(store: SqliteStore, secrets: FileSecretStore, here: Namespace) -> None:
        assert await _apply(store, secrets, here, _docs(listener)) == ['Listener "db" created']
        before = await store.get("Listener", "db")
        assert await _apply(store, secrets, here, _docs(listener)) == \
            ['Listener "db" unchanged']
        after = await store.get("Listener", "db")
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
        moved = service_resource("Listener", "db", 5433)
        assert await _apply(store, secrets, here, _docs(moved)) == ['Listener "db" configured']
        assert (await store.get("Listener", "db"))["metadata"]["generation"] == 2

    _with_site(tmp_path, body)


def test_a_file_cannot_rename_the_site_or_apply_without_one(tmp_path: Path) -> None:
    async def body(store: SqliteStore, secrets: FileSecretStore, here: Namespace) -> None:
        with pytest.raises(DocumentError, match='site of namespace "east" is "east"'):
            await plan(_docs(site_resource("west", "none", None)), here, "f.yaml")
        empty = Namespace(None, None, "north")
        with pytest.raises(DocumentError, match="holds no Site"):
            await plan(_docs(service_resource("Listener", "db", 1)), empty, "f.yaml")
        steps = await plan(_docs(site_resource("north", "none", None)), empty, "f.yaml")
        assert [step.action for step in steps] == [CREATED]

    _with_site(tmp_path, body)


def _answer(name: str) -> list[dict[str, Any]]:
    """A real redemption answer: the grant server's Secret and Link for ``name``."""
    return answer_documents(name, Credential(CLIENT.cert_pem, CLIENT.key_pem, 7),
                            SITE_CA.cert_pem, ENDPOINTS)


def test_link_and_secret_are_kept_as_a_redemption_keeps_them(tmp_path: Path) -> None:
    answer = _answer("peer")

    async def body(store: SqliteStore, secrets: FileSecretStore, here: Namespace) -> None:
        lines = await _apply(store, secrets, here, _docs(*answer))
        assert lines == ['Secret "peer" created', 'Link "peer" created']
        applied = await store.get("Link", "peer")
        # The same answer stored by the redemption path, in a namespace of its own.
        with SqliteStore(tmp_path / "other.db") as other:
            other_secrets = FileSecretStore(tmp_path / "other-secrets")
            raw = "".join("---\n" + yaml.safe_dump(d) for d in answer).encode()
            await store_answer(other, other_secrets, parse_answer(URL, raw, "peer"), 1)
            redeemed = await other.get("Link", "peer")
            assert applied["spec"] == redeemed["spec"]
            assert await secrets.get("peer") == await other_secrets.get("peer")
        assert await _apply(store, secrets, here, _docs(*answer)) == \
            ['Secret "peer" unchanged', 'Link "peer" unchanged']

    _with_site(tmp_path, body)


def test_credentials_are_checked_before_anything_is_written(tmp_path: Path) -> None:
    secret, link = _answer("peer")
    mismatched = {**secret, "data": {**secret["data"],
                                     "tls.key": _answer_for(OTHER)["data"]["tls.key"]}}

    async def body(store: SqliteStore, secrets: FileSecretStore, here: Namespace) -> None:
        listener = service_resource("Listener", "db", 5432)
        with pytest.raises(DocumentError, match=r'document 2 \(Link "peer"\).*neither in the'):
            await plan(_docs(listener, link), here, "f.yaml")
        with pytest.raises(DocumentError, match=r"data\.tls\.crt and data\.tls\.key are unusable"):
            await plan(_docs(listener, mismatched, link), here, "f.yaml")
        assert await store.list("Listener") == [] and await secrets.names() == []
        await secrets.put("peer", {"tls.crt": b"x", "tls.key": b"y", "ca.crt": b"z"})
        with pytest.raises(DocumentError, match="never replaces credentials"):
            await plan(_docs(secret, link), here, "f.yaml")
        # A Link may name a Secret the site already holds.
        steps = await plan(_docs(link), here, "f.yaml")
        assert [step.action for step in steps] == [CREATED]

    _with_site(tmp_path, body)


def _answer_for(pair: Any) -> dict[str, Any]:
    return answer_documents("x", Credential(pair.cert_pem, pair.key_pem, 1), SITE_CA.cert_pem,
                            ENDPOINTS)[0]


class Poster:
    """Stands in for the grant server: counts POSTs, answers honestly."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, url: str, ca: str, code: str, name: str, subject: str) -> bytes:
        self.calls += 1
        return "".join("---\n" + yaml.safe_dump(d) for d in _answer(name)).encode()


def test_an_access_token_is_redeemed_once_however_often_it_is_applied(tmp_path: Path) -> None:
    token = new_resource("AccessToken", "tok", {"url": URL, "code": "c0de", "ca": GRANT_CA,
                                                "linkCost": 3})
    poster = Poster()

    async def body(store: SqliteStore, secrets: FileSecretStore, here: Namespace) -> None:
        first = await _apply(store, secrets, here, _docs(token), poster)
        assert first == ['AccessToken "tok" created (redeemed)']
        again = await _apply(store, secrets, here, _docs(token), poster)
        assert again == ['AccessToken "tok" unchanged (redeemed)']
        assert poster.calls == 1
        (link,) = await store.list("Link")
        assert link["spec"]["cost"] == 3 and link["spec"]["tlsCredentials"] == "tok"

    _with_site(tmp_path, body)


def test_a_bad_token_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    token = new_resource("AccessToken", "tok", {"url": "http://127.0.0.1/x", "code": "c",
                                                "ca": GRANT_CA})

    async def body(store: SqliteStore, secrets: FileSecretStore, here: Namespace) -> None:
        with pytest.raises(DocumentError, match=r"document 2 \(AccessToken \"tok\"\).*https"):
            await plan(_docs(service_resource("Listener", "db", 1), token), here, "f.yaml")
        assert await store.list("Listener") == []

    _with_site(tmp_path, body)


def test_grant_bounds_are_the_grant_servers(tmp_path: Path) -> None:
    grant = new_resource("AccessGrant", "g", {"redemptionsAllowed": 10**7})

    async def body(store: SqliteStore, secrets: FileSecretStore, here: Namespace) -> None:
        with pytest.raises(DocumentError, match="redemptionsAllowed must be between"):
            await plan(_docs(grant), here, "f.yaml")
        ok = new_resource("AccessGrant", "g", {"redemptionsAllowed": 2,
                                                "expirationWindow": "1h"})
        assert [s.action for s in await plan(_docs(ok), here, "f.yaml")] == [CREATED]

    _with_site(tmp_path, body)


def test_a_write_that_fails_says_where_applying_stopped(tmp_path: Path) -> None:
    async def body(store: SqliteStore, secrets: FileSecretStore, here: Namespace) -> None:
        docs = _docs(service_resource("Listener", "a", 1), service_resource("Listener", "b", 2))
        steps = await plan(docs, here, "f.yaml")
        await store.create(service_resource("Listener", "b", 3))  # appears meanwhile
        lines: list[str] = []
        with pytest.raises(SkupperError, match=r'stopped at document 2 \(Listener "b"\)'):
            await execute(steps, store, secrets, "east", _no_site, lines.append)
        assert lines == ['Listener "a" created']

    _with_site(tmp_path, body)


def test_a_status_written_between_plan_and_write_does_not_stop_an_update(
        tmp_path: Path) -> None:
    async def body(store: SqliteStore, secrets: FileSecretStore, here: Namespace) -> None:
        await store.create(service_resource("Listener", "db", 1))
        steps = await plan(_docs(service_resource("Listener", "db", 2)), here, "f.yaml")
        await store.mutate_status("Listener", "db",  # the daemon, meanwhile
                                  lambda r: r.setdefault("status", {}).update(status="Ready"))
        lines: list[str] = []
        await execute(steps, store, secrets, "east", _no_site, lines.append)
        assert lines == ['Listener "db" configured']
        assert (await store.get("Listener", "db"))["spec"]["port"] == 2

    _with_site(tmp_path, body)


def test_words_are_kubectls() -> None:
    assert (CREATED, CONFIGURED, UNCHANGED) == ("created", "configured", "unchanged")
