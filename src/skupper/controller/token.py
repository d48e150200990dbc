"""The AccessToken reconciler: redeem a token at its grant server, keep what it answers.

An AccessToken resource is a token file applied to a site (upstream's model; on the
Kubernetes platform ``skupper access-token redeem`` creates one and waits). This
reconciler POSTs the code to the grant server once, stores the answer's Secret and
Links (the token's ``linkCost`` as their cost), and marks the token redeemed.

A redemption uses up one of the grant's uses, so it is attempted at most once per
token generation:

- ``status.redeemed`` (written last) ends the work for good;
- a token whose credentials and Links are already stored (the controller stopped after
  storing them, before writing the status) is marked redeemed without another POST;
- a failure (refusal, unreachable grant server, a bad answer) is recorded as status
  Error with the redeemer's own words, and not retried: a retry could spend a second
  use. Changing the token's spec (a new generation) tries again.

Platform-neutral: it needs only the Store and the SecretStore. Must not import cli.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from skupper.base.errors import SkupperError
from skupper.grants.token_file import check_link_name
from skupper.resources import Resource, new_resource
from skupper.resources.model import valid_name
from skupper.resources.site import is_site_credential
from skupper.resources.status import ERROR, PENDING, READY, get_condition, set_condition
from skupper.store.interface import AlreadyExists, NotFound, SecretStore, Store

if TYPE_CHECKING:
    from skupper.grants.client import Answer

log = logging.getLogger(__name__)

REDEEMED = "Redeemed"

# post(url, ca_pem, code, name, subject) -> the answer's bytes; blocking (run in a thread).
Post = Callable[[str, str, str, str, str], bytes]


def _default_post(url: str, ca: str, code: str, name: str, subject: str) -> bytes:
    from skupper.grants.client import post_redemption

    return post_redemption(url, ca, code, name, subject)


def links_of(links: list[Resource], token_name: str) -> list[Resource]:
    """The Links a redemption of ``token_name`` made: they use its Secret."""
    return [link for link in links
            if (link.get("spec") or {}).get("tlsCredentials") == token_name]


class TokenReconciler:
    def __init__(
        self,
        store: Store,
        secrets: SecretStore,
        site_name: Callable[[], Awaitable[str | None]],
        post: Post = _default_post,
    ) -> None:
        self._store = store
        self._secrets = secrets
        self._site_name = site_name
        self._post = post

    async def reconcile(self, name: str) -> None:
        try:
            token = await self._store.get("AccessToken", name)
        except NotFound:
            return
        status = token.get("status") or {}
        generation = int(token["metadata"].get("generation") or 0)
        cond = get_condition(token, REDEEMED)
        if status.get("redeemed"):
            return
        if cond and cond.get("reason") == ERROR and cond.get("observedGeneration") == generation:
            return  # failed for this spec; not retried (it could spend a second use)
        site = await self._site_name()
        if site is None:
            await self._set(name, False, PENDING, "Waiting for a site in this namespace")
            return
        try:
            # Its name becomes a Secret's and Links' names: never one of the site's own.
            check_link_name(name, f'access token "{name}"')
        except SkupperError as exc:
            await self._set(name, False, ERROR, exc.line())
            return
        stored = links_of(await self._store.list("Link"), name)
        if stored and await self._secrets.exists(name):
            await self._set(name, True, READY, "OK")  # stored before a restart: no new POST
            return
        try:
            created = await self._redeem(token, site)
        except SkupperError as exc:
            log.info("redeeming access token %s failed: %s", name, exc.line())
            await self._set(name, False, ERROR, exc.line())
            return
        log.info("access token %s redeemed: links %s", name, ", ".join(created))
        await self._set(name, True, READY, "OK")

    async def _redeem(self, token: Resource, site: str) -> list[str]:
        from skupper.grants.client import parse_answer
        from skupper.grants.token_file import check_access_token, link_cost

        name = str(token["metadata"]["name"])
        # Applied with kubectl, an AccessToken has had no other check: the token file's.
        check_access_token(token, f'access token "{name}"')
        spec = token["spec"]
        cost = link_cost(spec, f'access token "{name}"')
        await check_unused(self._store, self._secrets, name)
        body = await asyncio.to_thread(self._post, spec["url"], spec["ca"], spec["code"], name,
                                       site)
        answer = parse_answer(spec["url"], body, name)
        return await store_answer(self._store, self._secrets, answer, cost)

    async def _set(self, name: str, redeemed: bool, state: str, message: str) -> None:
        def change(token: Resource) -> None:
            status = token.setdefault("status", {})
            set_condition(token, REDEEMED, redeemed, REDEEMED if redeemed else state, message,
                          pending=state == PENDING)
            status["redeemed"] = redeemed
            status["status"] = state
            status["message"] = message

        with contextlib.suppress(NotFound):
            await self._store.mutate_status("AccessToken", name, change)


def _is_link_of(link_name: str, token_name: str) -> bool:
    """Whether a Link named ``link_name`` is one a redemption of ``token_name`` makes."""
    if link_name == token_name:
        return True
    prefix, _, number = link_name.rpartition("-")
    return prefix == token_name and number.isdigit()


async def check_unused(store: Store, secrets: SecretStore, name: str) -> None:
    """Refuse, before anything is spent, a token whose Links or Secret already exist here.

    A redemption writes the Secret ``name`` and Links ``name`` or ``name-N``: none of them
    may replace something that is there, whoever made it.
    """
    for existing in await store.list("Link"):
        link_name = str(existing["metadata"]["name"])
        if _is_link_of(link_name, name):
            raise redeemed_here_already(existing)
    if await secrets.exists(name):
        raise _secret_exists(name)


def redeemed_here_already(link: Resource) -> SkupperError:
    """The token's Link is here: say how it is doing; never advise deleting a working one."""
    from skupper.resources.status import is_ready, status_message

    name = str(link["metadata"]["name"])
    what = f'A link named "{name}" already exists'
    why = "this token seems to have been redeemed here already"
    if is_ready(link):
        return SkupperError(what, f"{why}, and the link is active",
                            f'Nothing to do; see "skupper link status {name}".')
    return SkupperError(
        what, f"{why}; the link's status is: {status_message(link) or 'no status yet'}",
        f'See "skupper link status {name}"; if it never comes up, "skupper link delete '
        f'{name}" removes it (redeeming again needs a token with a use left).')


async def _link_or_stub(store: Store, name: str) -> Resource:
    try:
        return await store.get("Link", name)
    except NotFound:  # gone again meanwhile: say what we know
        return new_resource("Link", name)


def _secret_exists(name: str) -> SkupperError:
    return SkupperError(
        f'A secret named "{name}" already exists',
        "redeeming this token would replace it",
        "Redeem the token in another namespace, or remove that secret first.",
    )


async def store_answer(store: Store, secrets: SecretStore, answer: Answer,
                       cost: int) -> list[str]:
    """Keep a checked answer's credential and Links; on any failure keep neither.

    Nothing here names a site credential: ``parse_answer`` took the names from the
    request, and the request's name was checked (``check_link_name``).
    """
    check_link_name(answer.secret_name, "the redemption answer")  # defence in depth
    if await secrets.exists(answer.secret_name):  # again: it may have appeared meanwhile
        raise _secret_exists(answer.secret_name)
    created: list[str] = []
    try:
        await secrets.put(answer.secret_name, dict(answer.credentials))
        for link_name, endpoints in answer.links:
            if is_site_credential(link_name) or not valid_name(link_name):  # defence in depth
                raise SkupperError(f'The redemption answer names a Link "{link_name}"',
                                   "that name is not one a redemption may create")
            spec = {**endpoints, "cost": cost, "tlsCredentials": answer.secret_name}
            try:
                await store.create(new_resource("Link", link_name, spec))
            except AlreadyExists:
                raise redeemed_here_already(
                    await _link_or_stub(store, link_name)) from None
            created.append(link_name)
    except BaseException:
        for link_name in created:
            with contextlib.suppress(Exception):
                await store.delete("Link", link_name)
        with contextlib.suppress(Exception):
            await secrets.delete(answer.secret_name)
        raise
    return created
