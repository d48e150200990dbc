"""``skupper system apply -f`` and ``skupper system delete -f``: a site described in files.

The file is read (bounded) and every document checked (``resources.documents``), then
planned against the namespace (``controller.apply.plan``): nothing is written unless all
of it can be. Then one line per resource, with kubectl's words: ``created``,
``configured`` (the spec changed), ``unchanged``; ``delete -f`` says ``deleted`` or
``not found``. Waiting (``--wait ready|configured|none``) comes after everything was
written; a resource that does not get there in time is named with its status message,
and nothing is rolled back (as with kubectl, what was applied stays).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from skupper.base.errors import SkupperError
from skupper.cli.help import ReferenceCommand
from skupper.cli.options import Target, context_options, duration_value, run, timeout_option

if TYPE_CHECKING:
    from skupper.cli.session import Session
    from skupper.controller.apply import Step
    from skupper.resources import Resource
    from skupper.resources.documents import Document

WAIT_CHOICES = ("ready", "configured", "none")

_FILE_HELP = "The file of resources (YAML or JSON). Use - to read them from standard input."


def _read(file: str) -> tuple[bytes, str]:
    """The file's bytes, bounded whatever it is (a pipe, /dev/zero), and how to name it."""
    from skupper.resources.documents import MAX_INPUT_BYTES, DocumentError

    limit = MAX_INPUT_BYTES + 1  # one byte more than allowed: parse() says it is too large
    if file == "-":
        import sys

        return sys.stdin.buffer.read(limit), "standard input"
    path = Path(file).expanduser()
    try:
        if path.is_dir():
            raise DocumentError(f"Cannot apply {file}", "it is a directory",
                                "Give a file, or - for standard input.")
        with path.open("rb") as handle:
            return handle.read(limit), file
    except FileNotFoundError:
        raise DocumentError(f"Cannot apply {file}", "no such file") from None
    except PermissionError:
        raise DocumentError(f"Cannot apply {file}", "permission denied") from None
    except OSError as exc:
        raise DocumentError(f"Cannot apply {file}", exc.strerror or str(exc)) from None


def _refuse_kubernetes(target: Target, action: str) -> None:
    from skupper.platforms.select import choose_platform

    if choose_platform(target.platform_flag) == "kubernetes":
        raise SkupperError(
            f"skupper system {action} -f does not apply to the kubernetes platform",
            "the cluster's API server takes the resources itself",
            f'Use "kubectl {action} -f FILE -n {target.namespace}".')


@click.command("apply", cls=ReferenceCommand,
               help="Create or update the resources of a file at the site.\n\n"
                    "Every document is checked before anything is written: one invalid "
                    "document and nothing of the file is applied. Each resource is then "
                    "created, configured (its spec changed) or left unchanged, one line "
                    "each; a Site comes first (creating one starts its daemon, as site "
                    "create does). An AccessToken is redeemed once: applying the file again "
                    "spends no second redemption. A resource that is not ready in time is "
                    "named with its status; nothing is rolled back.",
               short_help="Create or update the resources of a file at the site.",
               examples=[("Apply a site described in a file", "skupper system apply -f site.yaml"),
                         ("Apply what site generate prints",
                          "skupper site generate west | skupper system apply -f -"),
                         ("Apply without waiting",
                          "skupper system apply -f site.yaml --wait none")])
@click.option("-f", "--filename", "file", required=True, metavar="<file>", help=_FILE_HELP)
@click.option("--wait", type=click.Choice(WAIT_CHOICES), default="ready", show_default=True,
              help="Wait until every resource reaches this state (none: do not wait).")
@timeout_option()
@context_options
def apply(file: str, wait: str, timeout: str, target: Target) -> None:
    from skupper.resources.documents import parse, validate

    seconds = duration_value(timeout, "--timeout")
    _refuse_kubernetes(target, "apply")
    raw, source = _read(file)
    documents = validate(parse(raw, source), target.namespace, source)
    run(_apply(target, documents, source, wait, seconds))


async def _apply(target: Target, documents: list[Document], source: str, wait: str,
                 timeout: float) -> None:
    from skupper.cli.session import daemon_not_running_error, open_session
    from skupper.cli.site import create_site
    from skupper.controller.apply import CREATED, Namespace, execute, plan

    platform = target.platform()
    running = False
    if platform.has_state():
        async with open_session(target) as session:
            steps = await plan(documents, Namespace(session.store, platform.open_secrets(),
                                                    target.namespace), source)
            running = session.platform.running()
    else:
        steps = await plan(documents, Namespace(None, None, target.namespace), source)
    site_step = next((step for step in steps if step.document.kind == "Site"), None)
    new_site = site_step is not None and site_step.action == CREATED
    if wait != "none" and not new_site and not running:
        error = daemon_not_running_error(platform)
        raise SkupperError(error.what, error.why,
                           error.hint.rstrip(".") + ", or apply with --wait none. Nothing of "
                           "the file was applied.")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    if site_step is not None and new_site:
        # The first write: checked by everything above; it starts the site's daemon.
        await create_site(target, site_step.document.resource, "none", timeout)
        click.echo(f"{site_step.document.label} created")
        steps = [step for step in steps if step is not site_step]

    async def no_second_site(_resource: dict[str, object]) -> None:
        raise SkupperError("A second Site cannot be created")  # plan() allows one only

    async with open_session(target) as session:
        site_name = str((session.site or {}).get("metadata", {}).get("name", ""))
        await execute(steps, session.store, session.platform.open_secrets(), site_name,
                      no_second_site, click.echo)
        if wait != "none":
            all_steps = ([site_step] if site_step is not None and new_site else []) + steps
            await _wait(session, all_steps, wait, deadline)


async def _wait(session: Session, steps: list[Step], wait: str, deadline: float) -> None:
    """Each resource in turn, within one deadline; the first that fails is the error."""
    from skupper.controller.apply import SERVICE_KINDS, reached
    from skupper.controller.token import links_of
    from skupper.resources.status import is_ready

    loop = asyncio.get_running_loop()
    click.echo("Waiting for status...")
    for step in steps:
        doc = step.document
        current = await session.store.get(doc.kind, doc.name) \
            if doc.kind not in ("Secret", "RouterAccess") else None
        generation = int((current or {}).get("metadata", {}).get("generation") or 1)
        done = reached(doc.kind, wait, generation)
        if done is None:
            continue
        reached_now = await _wait_one(session, doc.kind, doc.name, done,
                                      deadline - loop.time(), wait)
        if doc.kind in SERVICE_KINDS and wait == "ready" and not is_ready(reached_now):
            from skupper.base.text import printable
            from skupper.resources.status import status_message

            click.echo(f"{doc.label} is configured ({printable(status_message(reached_now))}).")
        else:
            click.echo(f"{doc.label} is {wait}.")
        if doc.kind == "AccessToken" and wait == "ready":
            for link in links_of(await session.store.list("Link"), doc.name):
                link_name = str(link["metadata"]["name"])
                await _wait_one(session, "Link", link_name, is_ready, deadline - loop.time(),
                                wait)
                click.echo(f'Link "{link_name}" is ready.')


async def _wait_one(session: Session, kind: str, name: str, done: Callable[[Resource], bool],
                    left: float, wait: str) -> Resource:
    from skupper.cli.session import wait_until

    label = f'{kind} "{name}"'
    try:
        return await wait_until(session, kind, name, done, max(left, 0.001), what=label)
    except SkupperError as exc:
        raise SkupperError(f"{label} is not {wait}", exc.line(),
                           "Nothing was rolled back: the applied resources stay; fix the "
                           "cause and apply again.") from None


@click.command("delete", cls=ReferenceCommand,
               help="Delete the resources a file names from the site.\n\n"
                    "The documents are checked first (kind, apiVersion, name); then each "
                    "resource is deleted, one line each. One that is not there is reported "
                    "\"not found\" and the others are still deleted (the command succeeds). "
                    "A Site goes last and means site delete: its daemon stops and the "
                    "namespace's state goes with it.",
               short_help="Delete the resources a file names from the site.",
               examples=[("Delete what a file applied", "skupper system delete -f site.yaml")])
@click.option("-f", "--filename", "file", required=True, metavar="<file>", help=_FILE_HELP)
@context_options
def delete(file: str, target: Target) -> None:
    from skupper.resources.documents import envelopes, parse

    _refuse_kubernetes(target, "delete")
    raw, source = _read(file)
    documents = envelopes(parse(raw, source), target.namespace, source)
    run(_delete(target, documents))


async def _delete(target: Target, documents: list[Document]) -> None:
    from skupper.cli.session import open_session
    from skupper.controller.apply import DELETED, NOT_FOUND, delete

    platform = target.platform()
    wanted = next((doc for doc in documents if doc.kind == "Site"), None)
    site_name: str | None = None
    if platform.has_state():
        async with open_session(target) as session:
            await delete(documents, session.store, session.platform.open_secrets(),
                         click.echo)
            site_name = str(session.site["metadata"]["name"]) if session.site else None
    else:
        for doc in reversed(documents):
            if doc.kind != "Site":
                click.echo(f"{doc.label} {NOT_FOUND}")
    if wanted is None:
        return
    if site_name != wanted.name:
        click.echo(f"{wanted.label} {NOT_FOUND}")
        return
    platform.stop(remove_unit=True)
    platform.remove_state()
    click.echo(f"{wanted.label} {DELETED}")
