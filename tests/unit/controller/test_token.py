"""The AccessToken reconciler on the local store (it is platform-neutral): one POST per
token, its answer kept as a Secret and Links, failures recorded and never retried."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml

from skupper.base.errors import SkupperError
from skupper.controller.token import TokenReconciler, links_of
from skupper.grants.redemption import Credential, answer_documents
from skupper.resources import new_resource
from skupper.store.secrets import FileSecretStore
from skupper.store.sqlite import SqliteStore

ENDPOINTS = [{"name": "inter-router", "host": "127.0.0.1", "port": "55671", "group": "g"},
             {"name": "edge", "host": "127.0.0.1", "port": "45671", "group": "g"}]
TOKEN_SPEC = {"url": "https://127.0.0.1:9090/uid", "code": "c0de", "ca": "PEM", "linkCost": 4}


class Poster:
    """Stands in for the grant server: records each POST, answers or refuses."""

    def __init__(self, refuse: bool = False) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.refuse = refuse

    def __call__(self, url: str, ca: str, code: str, name: str, subject: str) -> bytes:
        self.calls.append((url, code, name, subject))
        if self.refuse:
            raise SkupperError(f"Redeeming the token at {url} failed", "no such claim")
        documents = answer_documents(name, Credential(b"CERT", b"KEY", 1), b"CA", ENDPOINTS)
        return "".join("---\n" + yaml.safe_dump(d) for d in documents).encode()


def _run(tmp_path: Path, poster: Poster, *, site: str | None = "east",
         before: Any = None) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    async def main() -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
        with SqliteStore(tmp_path / "ns.db") as store:
            secrets = FileSecretStore(tmp_path / "secrets")

            async def site_name() -> str | None:
                return site

            reconciler = TokenReconciler(store, secrets, site_name, post=poster)
            await store.create(new_resource("AccessToken", "tok", TOKEN_SPEC))
            if before is not None:
                await before(store, secrets)
            await reconciler.reconcile("tok")
            await reconciler.reconcile("tok")  # a second pass changes nothing
            token = await store.get("AccessToken", "tok")
            links = links_of(await store.list("Link"), "tok")
            found = {n: await secrets.get(n) for n in await secrets.names()}
            return token, links, found

    return asyncio.run(main())


def test_redeems_once_and_keeps_the_answer(tmp_path: Path) -> None:
    poster = Poster()
    token, links, secrets = _run(tmp_path, poster)
    assert poster.calls == [(TOKEN_SPEC["url"], "c0de", "tok", "east")]
    assert token["status"]["redeemed"] is True
    assert token["status"]["status"] == "Ready"
    (link,) = links
    assert link["metadata"]["name"] == "tok"
    assert link["spec"]["cost"] == 4 and link["spec"]["tlsCredentials"] == "tok"
    assert secrets == {"tok": {"tls.crt": b"CERT", "tls.key": b"KEY", "ca.crt": b"CA"}}


def test_a_refusal_is_recorded_and_not_retried(tmp_path: Path) -> None:
    poster = Poster(refuse=True)
    token, links, secrets = _run(tmp_path, poster)
    assert len(poster.calls) == 1  # the second reconcile did not POST again
    assert token["status"]["redeemed"] is False
    assert token["status"]["status"] == "Error"
    assert token["status"]["message"] == (
        f"Redeeming the token at {TOKEN_SPEC['url']} failed: no such claim")
    assert links == [] and secrets == {}


def test_credentials_stored_before_a_restart_are_not_redeemed_again(tmp_path: Path) -> None:
    async def stored_earlier(store: SqliteStore, secrets: FileSecretStore) -> None:
        await secrets.put("tok", {"tls.crt": b"C", "tls.key": b"K", "ca.crt": b"A"})
        await store.create(new_resource("Link", "tok", {"endpoints": ENDPOINTS,
                                                        "tlsCredentials": "tok"}))

    poster = Poster()
    token, _, _ = _run(tmp_path, poster, before=stored_earlier)
    assert poster.calls == []
    assert token["status"]["redeemed"] is True


def test_waits_for_a_site(tmp_path: Path) -> None:
    poster = Poster()
    token, _, _ = _run(tmp_path, poster, site=None)
    assert poster.calls == []
    assert token["status"]["status"] == "Pending"
