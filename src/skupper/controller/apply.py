"""``system apply -f`` and ``system delete -f`` over a Store: plan first, then write.

``plan`` decides, for every checked document (``resources.documents``), whether it is
``created``, ``configured`` (its spec changes) or ``unchanged``, and makes the checks that
need the store, the certificates or the token rules; it writes nothing, so a refused file
leaves the namespace as it was. ``execute`` then writes the plan in ``APPLY_ORDER``.

Credentials are kept the way a redemption keeps its answer: a Secret's name is never one
of the site's own (``skupper-``), an existing Secret is never replaced (the same data is
``unchanged``; other data is refused), and a Link must name a Secret of the file or of
the site. An AccessToken is redeemed by the AccessToken reconciler, once: a token already
redeemed here (or whose Link and Secret are already stored) is not presented again, so
applying the same file twice spends one redemption (upstream #2112).

Platform-neutral: the caller creates a new Site (that starts its daemon) and waits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from skupper.base.errors import SkupperError
from skupper.controller.token import Post, TokenReconciler
from skupper.resources import Resource
from skupper.resources.documents import (
    APPLY_ORDER,
    Document,
    DocumentError,
    decoded_secret,
)
from skupper.resources.status import get_condition
from skupper.store.interface import Conflict, NotFound, SecretStore, Store, StoreError

CREATED, CONFIGURED, UNCHANGED = "created", "configured", "unchanged"
SERVICE_KINDS = ("Listener", "Connector")
DELETED, NOT_FOUND = "deleted", "not found"


@dataclass
class Step:
    document: Document
    action: str  # CREATED, CONFIGURED or UNCHANGED


@dataclass(frozen=True)
class Namespace:
    """What ``plan`` reads: the store and secrets, or None for a namespace with no state."""

    store: Store | None
    secrets: SecretStore | None
    name: str

    async def get(self, kind: str, name: str) -> Resource | None:
        if self.store is None:
            return None
        try:
            return await self.store.get(kind, name)
        except NotFound:
            return None

    async def site(self) -> Resource | None:
        sites = await self.store.list("Site") if self.store is not None else []
        return sites[0] if sites else None

    async def secret(self, name: str) -> dict[str, bytes] | None:
        if self.secrets is None:
            return None
        try:
            return await self.secrets.get(name)
        except NotFound:
            return None


def _fail(source: str, doc: Document, why: str) -> DocumentError:
    return DocumentError(f"Cannot apply {source}", f"document {doc.index} ({doc.label}): {why}",
                         "Nothing of the file was applied.")


def _ordered(documents: list[Document]) -> list[Document]:
    return sorted(documents, key=lambda doc: (APPLY_ORDER.index(doc.kind), doc.index))


async def plan(documents: list[Document], here: Namespace, source: str) -> list[Step]:
    """Every document's action, after every check; raises before anything is written."""
    site = await here.site()
    wanted = next((doc for doc in documents if doc.kind == "Site"), None)
    if site is None and wanted is None:
        raise DocumentError(f"Cannot apply {source}",
                            f'there is no site in namespace "{here.name}" and the file holds '
                            "no Site", 'Put a Site in the file or create one first ("skupper '
                            'site create <name>"). Nothing of the file was applied.')
    if site is not None and wanted is not None and wanted.name != site["metadata"]["name"]:
        raise _fail(source, wanted, f'the site of namespace "{here.name}" is '
                                    f'"{site["metadata"]["name"]}"; a file cannot rename it '
                                    "(delete the site first)")
    secrets_in_file = {doc.name for doc in documents if doc.kind == "Secret"}
    steps: list[Step] = []
    site_action = UNCHANGED
    for doc in _ordered(documents):
        if doc.kind == "Secret":
            steps.append(await _plan_secret(doc, here, source))
            continue
        if doc.kind == "RouterAccess":
            steps.append(Step(doc, site_action))
            continue
        _check_content(doc, source)
        if doc.kind == "Link":
            credentials = doc.resource["spec"]["tlsCredentials"]
            if credentials not in secrets_in_file and await here.secret(credentials) is None:
                raise _fail(source, doc, f'spec.tlsCredentials names the Secret "{credentials}", '
                                         "which is neither in the file nor at the site")
        current = site if doc.kind == "Site" else await here.get(doc.kind, doc.name)
        if current is None:
            action = CREATED
        elif (current.get("spec") or {}) == doc.resource["spec"]:
            action = UNCHANGED
        else:
            action = CONFIGURED
        if doc.kind == "Site":
            site_action = action
        steps.append(Step(doc, action))
    return steps


def _check_content(doc: Document, source: str) -> None:
    """The checks the grant and token code makes of what it is given, made before writing."""
    if doc.kind == "AccessToken":
        from skupper.grants.token_file import check_access_token

        try:
            check_access_token(doc.resource, doc.label)
        except SkupperError as exc:
            raise _fail(source, doc, exc.why) from None
    elif doc.kind == "AccessGrant":
        from skupper.grants.redemption import redemptions_allowed

        try:
            redemptions_allowed(doc.resource)
        except ValueError as exc:
            raise _fail(source, doc, f"spec.{exc}") from None


async def _plan_secret(doc: Document, here: Namespace, source: str) -> Step:
    from skupper.certs.issue import KeyPair, is_ca_certificate, key_pair_problem

    data = decoded_secret(doc.resource)
    if not is_ca_certificate(data["ca.crt"]):
        raise _fail(source, doc, "data.ca.crt is not a CA certificate")
    problem = key_pair_problem(KeyPair(cert_pem=data["tls.crt"], key_pem=data["tls.key"]),
                               ca=False, signed_by=data["ca.crt"])
    if problem:
        problem = problem.replace("the site's CA", "its ca.crt")
        raise _fail(source, doc, f"data.tls.crt and data.tls.key are unusable: {problem}")
    stored = await here.secret(doc.name)
    if stored is None:
        return Step(doc, CREATED)
    if all(stored.get(key) == value for key, value in data.items()):
        return Step(doc, UNCHANGED)
    raise _fail(source, doc, "a Secret of that name exists with other data, and apply never "
                             'replaces credentials (remove it first: "skupper system delete -f")')


CreateSite = Callable[[Resource], Awaitable[None]]
Say = Callable[[str], None]


async def execute(steps: list[Step], store: Store, secrets: SecretStore, site_name: str,
                  create_site: CreateSite, say: Say, post: Post | None = None) -> None:
    """Write the plan, one line per resource; a new Site is made by ``create_site``.

    ``post`` stands in for the grant server's client (tests).
    """
    async def current_site() -> str | None:
        return site_name

    tokens = TokenReconciler(store, secrets, current_site) if post is None else \
        TokenReconciler(store, secrets, current_site, post)
    for step in steps:
        doc, action = step.document, step.action
        try:
            detail = await _write(step, store, secrets, tokens, create_site)
        except (SkupperError, StoreError) as exc:
            # The plan was checked, but another writer may have come first meanwhile.
            why = exc.line() if isinstance(exc, SkupperError) else str(exc)
            raise SkupperError(f"Applying stopped at document {doc.index} ({doc.label})",
                               why, "The documents before it were applied; apply the file "
                               "again.") from None
        say(f"{doc.label} {action}{detail}")


async def _write(step: Step, store: Store, secrets: SecretStore, tokens: TokenReconciler,
                 create_site: CreateSite) -> str:
    doc, action = step.document, step.action
    if doc.kind == "RouterAccess":
        return " (the Site's link access)"  # folded into the Site by the checks
    if action == CREATED:
        if doc.kind == "Site":
            await create_site(doc.resource)
        elif doc.kind == "Secret":
            await secrets.put(doc.name, decoded_secret(doc.resource))
        else:
            await store.create(doc.resource)
    elif action == CONFIGURED:
        await _replace_spec(store, doc.kind, doc.name, doc.resource["spec"])
    if doc.kind != "AccessToken":
        return ""
    # Whatever the action: the reconciler redeems only a token not yet redeemed here, so
    # a file applied again, or after an interrupted apply, spends no second redemption.
    await tokens.reconcile(doc.name)
    token = await store.get("AccessToken", doc.name)
    status = token.get("status") or {}
    if status.get("redeemed"):
        return " (redeemed)"
    from skupper.base.text import printable

    return f" (not redeemed: {printable(status.get('message') or 'no status yet', 300)})"


# The daemon rewrites status often (a Site's network view every few seconds), and each
# write is a new resourceVersion: a spec update re-reads and tries again this often.
_UPDATE_ATTEMPTS = 10


async def _replace_spec(store: Store, kind: str, name: str, spec: dict[str, Any]) -> None:
    for _ in range(_UPDATE_ATTEMPTS):
        current = await store.get(kind, name)
        current["spec"] = spec
        try:
            await store.update(current)
            return
        except Conflict:
            continue
    raise SkupperError(f'{kind} "{name}" kept changing while being updated')


def reached(kind: str, wait: str, generation: int) -> Callable[[Resource], bool] | None:
    """Whether a resource of ``kind`` is as ``--wait`` asks; None: nothing to wait for."""
    if wait == "none" or kind in ("Secret", "RouterAccess"):
        return None
    if kind == "AccessToken":
        return lambda token: bool((token.get("status") or {}).get("redeemed"))
    # A listener or connector is ready here once it is configured (it listens, the router
    # has it): whether a peer at another site matches it is the network's business, and
    # a site applied before its peers must not wait for them.
    ctype = "Ready" if wait == "ready" and kind not in SERVICE_KINDS else (
        "Processed" if kind == "AccessGrant" else "Configured")

    def done(resource: Resource) -> bool:
        cond = get_condition(resource, ctype)
        return bool(cond and cond.get("status") == "True"
                    and int(cond.get("observedGeneration") or 0) >= generation)

    return done


async def delete(documents: list[Document], store: Store, secrets: SecretStore,
                 say: Say) -> None:
    """Delete what the documents name but the Site (the caller deletes it, last)."""
    for doc in reversed(_ordered(documents)):
        if doc.kind in ("Site", "RouterAccess"):
            continue
        try:
            if doc.kind == "Secret":
                if not await secrets.exists(doc.name):
                    raise NotFound("Secret", doc.name)
                await secrets.delete(doc.name)
            else:
                await store.delete(doc.kind, doc.name)
        except NotFound:
            say(f"{doc.label} {NOT_FOUND}")
            continue
        say(f"{doc.label} {DELETED}")

