"""The AccessToken reconciler on the local store (it is platform-neutral): one POST per
token, its answer kept as a Secret and Links, failures recorded and never retried, and
nothing the token or the grant server names can replace the site's own credentials."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from skupper.base.errors import SkupperError
from skupper.certs.issue import generate_ca, issue_certificate
from skupper.controller.token import TokenReconciler, links_of
from skupper.grants.redemption import Credential, answer_documents
from skupper.resources import new_resource
from skupper.store.secrets import FileSecretStore
from skupper.store.sqlite import SqliteStore

ENDPOINTS = [{"name": "inter-router", "host": "127.0.0.1", "port": "55671", "group": "g"},
             {"name": "edge", "host": "127.0.0.1", "port": "45671", "group": "g"}]
GRANT_CA = generate_ca("west grant server CA").cert_pem.decode()
SITE_CA = generate_ca("west site CA")
CLIENT = issue_certificate(SITE_CA, "east", usage="client")
URL = "https://127.0.0.1:9090/0b8e6a2c-5a3f-4d3e-9c3b-2f6a3c1d9e7f"
TOKEN_SPEC = {"url": URL, "code": "c0de", "ca": GRANT_CA, "linkCost": 4}

Documents = list[dict[str, Any]]


def honest(name: str) -> Documents:
    credential = Credential(CLIENT.cert_pem, CLIENT.key_pem, 1)
    return answer_documents(name, credential, SITE_CA.cert_pem, ENDPOINTS)


class Poster:
    """Stands in for the grant server: records each POST, answers or refuses.

    ``alter`` turns the honest answer into a hostile one.
    """

    def __init__(self, refuse: bool = False,
                 alter: Callable[[Documents], Documents] | None = None,
                 raw: bytes | None = None) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.refuse = refuse
        self.alter = alter
        self.raw = raw

    def __call__(self, url: str, ca: str, code: str, name: str, subject: str) -> bytes:
        self.calls.append((url, code, name, subject))
        if self.refuse:
            raise SkupperError(f"Redeeming the token at {url} failed", "no such claim")
        if self.raw is not None:
            return self.raw
        documents = honest(name)
        if self.alter is not None:
            documents = self.alter(documents)
        return "".join("---\n" + yaml.safe_dump(d) for d in documents).encode()


Before = Callable[[SqliteStore, FileSecretStore], Awaitable[None]]


def _run(tmp_path: Path, poster: Poster, *, site: str | None = "east",
         before: Before | None = None, name: str = "tok",
         spec: dict[str, Any] | None = None,
         ) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    async def main() -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
        with SqliteStore(tmp_path / "ns.db") as store:
            secrets = FileSecretStore(tmp_path / "secrets")

            async def site_name() -> str | None:
                return site

            reconciler = TokenReconciler(store, secrets, site_name, post=poster)
            await store.create(new_resource("AccessToken", name, spec or TOKEN_SPEC))
            if before is not None:
                await before(store, secrets)
            await reconciler.reconcile(name)
            await reconciler.reconcile(name)  # a second pass changes nothing
            token = await store.get("AccessToken", name)
            links = await store.list("Link")
            found = {n: await secrets.get(n) for n in await secrets.names()}
            return token, links, found

    return asyncio.run(main())


def test_redeems_once_and_keeps_the_answer(tmp_path: Path) -> None:
    poster = Poster()
    token, links, secrets = _run(tmp_path, poster)
    assert poster.calls == [(URL, "c0de", "tok", "east")]
    assert token["status"]["redeemed"] is True
    assert token["status"]["status"] == "Ready"
    (link,) = links_of(links, "tok")
    assert link["metadata"]["name"] == "tok"
    assert link["spec"]["cost"] == 4 and link["spec"]["tlsCredentials"] == "tok"
    assert link["spec"]["endpoints"] == ENDPOINTS
    assert secrets == {"tok": {"tls.crt": CLIENT.cert_pem, "tls.key": CLIENT.key_pem,
                               "ca.crt": SITE_CA.cert_pem}}


def test_a_refusal_is_recorded_and_not_retried(tmp_path: Path) -> None:
    poster = Poster(refuse=True)
    token, links, secrets = _run(tmp_path, poster)
    assert len(poster.calls) == 1  # the second reconcile did not POST again
    assert token["status"]["redeemed"] is False
    assert token["status"]["status"] == "Error"
    assert token["status"]["message"] == f"Redeeming the token at {URL} failed: no such claim"
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


# --- hostile grant servers: refused, nothing written ------------------------------------


def _rename_secret(to: str) -> Callable[[Documents], Documents]:
    def alter(documents: Documents) -> Documents:
        documents[0]["metadata"]["name"] = to
        for link in documents[1:]:
            link["spec"]["tlsCredentials"] = to
        return documents

    return alter


def _rename_links(*names: str) -> Callable[[Documents], Documents]:
    def alter(documents: Documents) -> Documents:
        link = documents[1]
        return [documents[0], *({**link, "metadata": {"name": n}} for n in names)]

    return alter


def _link_spec(key: str, value: Any) -> Callable[[Documents], Documents]:
    def alter(documents: Documents) -> Documents:
        documents[1]["spec"][key] = value
        return documents

    return alter


def _endpoint(key: str, value: Any) -> Callable[[Documents], Documents]:
    def alter(documents: Documents) -> Documents:
        documents[1]["spec"]["endpoints"][0][key] = value
        return documents

    return alter


def _secret_key(key: str, value: str) -> Callable[[Documents], Documents]:
    def alter(documents: Documents) -> Documents:
        documents[0]["data"][key] = value
        return documents

    return alter


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


HOSTILE: dict[str, tuple[Callable[[Documents], Documents], str]] = {
    "secret named skupper-site-ca": (_rename_secret("skupper-site-ca"),
                                     'Secret is named "skupper-site-ca", not "tok"'),
    "secret of another name": (_rename_secret("other"), 'Secret is named "other"'),
    "link of another name": (_rename_links("other"), 'Links are named "other"'),
    "link named skupper-site-server": (_rename_links("skupper-site-server"),
                                       "Links are named"),
    "links not numbered": (_rename_links("tok", "tok"), "Links are named"),
    "two links of one name, unlike": (
        lambda d: [d[0], d[1], {**d[1], "metadata": {"name": "tok"}, "spec": {"x": 1}}],
        "Links are named"),
    "link pointing at the site CA": (_link_spec("tlsCredentials", "skupper-site-ca"),
                                     'names the Secret "skupper-site-ca"'),
    "port out of range": (_endpoint("port", "70000"), "invalid port"),
    "port of 5000 digits": (_endpoint("port", "9" * 5000), "invalid port"),
    "host with a newline": (_endpoint("host", "evil\nhost"), "invalid host"),
    "no inter-router endpoint": (_endpoint("name", "edge"), "no inter-router endpoint"),
    "client cert is the CA": (_secret_key("tls.crt", _b64(SITE_CA.cert_pem)),
                              "client credential is unusable"),
    "key of another cert": (_secret_key("tls.key", _b64(SITE_CA.key_pem)),
                            "does not match"),
    "ca.crt not a CA": (_secret_key("ca.crt", _b64(CLIENT.cert_pem)), "not a CA certificate"),
    "not base64": (_secret_key("tls.key", "@@@"), "not base64"),
    "a third kind": (lambda d: [*d, {"kind": "ConfigMap", "metadata": {"name": "x"}}],
                     "holds a ConfigMap"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_answer_is_refused_and_nothing_is_written(tmp_path: Path, case: str) -> None:
    alter, fragment = HOSTILE[case]
    poster = Poster(alter=alter)
    token, links, secrets = _run(tmp_path, poster)
    assert len(poster.calls) == 1
    assert token["status"]["redeemed"] is False
    assert token["status"]["status"] == "Error"
    message = token["status"]["message"]
    assert fragment in message and "\n" not in message, message
    assert message.startswith(f"Redeeming the token at {URL} failed: ")
    assert "the answer" in message
    assert links == [] and secrets == {}


ALIAS_BOMB = (b'a: &a ["x","x","x","x","x","x","x","x","x"]\n'
              + b"".join(f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n"
                         .encode() for i in range(12)))


@pytest.mark.parametrize(("body", "fragment"), [
    (ALIAS_BOMB, "not YAML (without aliases)"),
    (b"[" * 5000, "not YAML"),
    (b"port: " + b"9" * 5000 + b"\n", "not YAML"),
])
def test_an_answer_that_is_a_yaml_bomb_is_refused(tmp_path: Path, body: bytes,
                                                  fragment: str) -> None:
    token, links, secrets = _run(tmp_path, Poster(raw=body))
    assert fragment in token["status"]["message"]
    assert links == [] and secrets == {}


# --- tokens that could take over the site: refused before any POST ----------------------


async def _site_credentials(store: SqliteStore, secrets: FileSecretStore) -> None:
    await secrets.put("skupper-site-ca", {"tls.crt": SITE_CA.cert_pem,
                                          "tls.key": SITE_CA.key_pem})


BAD_TOKENS: dict[str, tuple[str, dict[str, Any], str]] = {
    "named skupper-site-ca": ("skupper-site-ca", TOKEN_SPEC, "reserved for the site's own"),
    "named skupper-anything": ("skupper-x", TOKEN_SPEC, "reserved for the site's own"),
    "cost too large": ("tok", {**TOKEN_SPEC, "linkCost": 2_000_000}, "spec.linkCost"),
    "cost a string": ("tok", {**TOKEN_SPEC, "linkCost": "5"}, "spec.linkCost"),
    "cost a float": ("tok", {**TOKEN_SPEC, "linkCost": 1.5}, "spec.linkCost"),
    "cost a bool": ("tok", {**TOKEN_SPEC, "linkCost": True}, "spec.linkCost"),
    "url with user info": ("tok", {**TOKEN_SPEC, "url": "https://u:p@127.0.0.1:9090/x"},
                           "user information"),
    "url not https": ("tok", {**TOKEN_SPEC, "url": "http://127.0.0.1:9090/x"}, "must be https"),
    "ca not a certificate": ("tok", {**TOKEN_SPEC, "ca": "PEM"}, "spec.ca"),
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
def test_a_bad_access_token_is_refused_before_any_post(tmp_path: Path, case: str) -> None:
    name, spec, fragment = BAD_TOKENS[case]
    poster = Poster()
    token, links, secrets = _run(tmp_path, poster, name=name, spec=spec,
                                 before=_site_credentials)
    assert poster.calls == []
    assert token["status"]["status"] == "Error"
    assert fragment in token["status"]["message"], token["status"]["message"]
    assert links == []
    # The site's CA is untouched.
    assert secrets == {"skupper-site-ca": {"tls.crt": SITE_CA.cert_pem,
                                           "tls.key": SITE_CA.key_pem}}


def test_an_existing_secret_of_the_tokens_name_is_never_replaced(tmp_path: Path) -> None:
    async def someone_elses(store: SqliteStore, secrets: FileSecretStore) -> None:
        await secrets.put("tok", {"password": b"not skupper's"})

    poster = Poster()
    token, links, secrets = _run(tmp_path, poster, before=someone_elses)
    assert poster.calls == []  # refused before the redemption was spent
    assert 'A secret named "tok" already exists' in token["status"]["message"]
    assert links == []
    assert secrets == {"tok": {"password": b"not skupper's"}}


def test_an_existing_link_named_like_the_answer_is_never_replaced(tmp_path: Path) -> None:
    async def existing(store: SqliteStore, secrets: FileSecretStore) -> None:
        await store.create(new_resource("Link", "tok-2", {"endpoints": ENDPOINTS,
                                                          "tlsCredentials": "mine"}))

    poster = Poster()
    token, links, secrets = _run(tmp_path, poster, before=existing)
    assert poster.calls == []
    assert 'A link named "tok-2" already exists' in token["status"]["message"]
    assert [link["spec"]["tlsCredentials"] for link in links] == ["mine"]
    assert secrets == {}


def test_an_answer_with_two_endpoint_groups_makes_numbered_links(tmp_path: Path) -> None:
    two_groups = [*ENDPOINTS, {"name": "inter-router", "host": "127.0.0.2", "port": "55671",
                               "group": "h"}]

    def answer(documents: Documents) -> Documents:
        credential = Credential(CLIENT.cert_pem, CLIENT.key_pem, 1)
        return answer_documents("tok", credential, SITE_CA.cert_pem, two_groups)

    token, links, secrets = _run(tmp_path, Poster(alter=answer))
    assert token["status"]["redeemed"] is True
    assert sorted(link["metadata"]["name"] for link in links) == ["tok-1", "tok-2"]
    assert {link["spec"]["tlsCredentials"] for link in links} == {"tok"}
    assert list(secrets) == ["tok"]
