"""What ``skupper listener`` and ``skupper connector`` share: create/update/delete/status.

Both kinds have the same life: a resource in the store, reconciled by the daemon
(``controller.service``); the commands write it and wait for the daemon's answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click

from skupper.base.errors import SkupperError, UsageError
from skupper.cli.help import ReferenceCommand
from skupper.cli.names import LABEL_LENGTH, name_callback
from skupper.cli.options import (
    Target,
    context_options,
    duration_value,
    output_option,
    run,
    timeout_option,
)
from skupper.resources.fields import SERVICE_TYPES as TYPES
from skupper.resources.fields import host_problem, port_number, routing_key_problem

WAIT_CHOICES = ("configured", "ready", "none")


@dataclass(frozen=True)
class Kind:
    kind: str  # Listener | Connector
    word: str  # listener | connector
    default_host: str
    match_flag: str  # status field: hasMatchingConnector | hasMatchingListener
    match_column: str  # MATCHING-CONNECTOR | MATCHING-LISTENER


def check_routing_key(key: str) -> None:
    problem = routing_key_problem(key)
    if problem:
        raise UsageError(f'Invalid routing key "{key}"', problem)


def check_host(host: str) -> None:
    problem = host_problem(host)
    if problem:
        raise UsageError(f'Invalid host "{host}"', problem)


def port_value(text: str | int, what: str) -> int:
    port = port_number(text.strip() if isinstance(text, str) else text)
    if port is None:
        raise UsageError(f'Invalid {what} "{text}"', "a port number (1-65535) is expected")
    return port


def from_flags(kind: Kind, name: str, port: str, routing_key: str | None, host: str | None,
               type_: str | None) -> dict[str, Any]:
    """The resource ``create`` stores and ``generate`` prints, from the same flags."""
    from skupper.resources.build import service_resource

    if routing_key is not None:
        check_routing_key(routing_key)
    if host is not None:
        check_host(host)
    return service_resource(kind.kind, name, port_value(port, f"{kind.word} port"),
                            routing_key=routing_key, host=host, type_=type_)


def _not_found(kind: Kind, name: str, namespace: str) -> SkupperError:
    return SkupperError(f'No {kind.word} "{name}"', f'not in namespace "{namespace}"',
                        f'List {kind.word}s with "skupper {kind.word} status".')


def _done(wait: str, generation: int) -> Any:
    from skupper.resources.status import get_condition

    ctype = "Ready" if wait == "ready" else "Configured"

    def done(resource: dict[str, Any]) -> bool:
        cond = get_condition(resource, ctype)
        configured = get_condition(resource, "Configured")
        return bool(cond and cond.get("status") == "True" and configured
                    and configured.get("observedGeneration") == generation)

    return done


async def _wait(session: Any, kind: Kind, name: str, wait: str, timeout: float, since: int,
                generation: int, action: str) -> None:
    from skupper.cli.session import wait_until

    click.echo(f"Waiting for {action} to complete...")
    await wait_until(session, kind.kind, name, _done(wait, generation), timeout, since=since,
                     what=f'{kind.kind} "{name}"')
    click.echo(f'{kind.kind} "{name}" is {wait}.')


async def create(target: Target, kind: Kind, resource: dict[str, Any], wait: str,
                 timeout: float) -> None:
    from skupper.cli.session import open_session, require_running, require_site
    from skupper.store.interface import AlreadyExists

    name = resource["metadata"]["name"]
    async with open_session(target) as session:
        require_site(session)
        if wait != "none":
            require_running(session)
        since = await session.store.current_version()
        try:
            created = await session.store.create(resource)
        except AlreadyExists:
            raise SkupperError(
                f'There is already a {kind.word} "{name}"',
                f'in namespace "{target.namespace}"',
                f'Change it with "skupper {kind.word} update" or delete it first.') from None
        if wait != "none":
            try:
                await _wait(session, kind, name, wait, timeout, since,
                            int(created["metadata"].get("generation", 1)), "create")
            except SkupperError:
                await _undo_if_port_taken(session, kind, name)
                raise


async def _undo_if_port_taken(session: Any, kind: Kind, name: str) -> None:
    """A listener whose port another process holds is not left behind in Error."""
    from skupper.controller.service import PORT_IN_USE
    from skupper.store.interface import NotFound

    try:
        current = await session.store.get(kind.kind, name)
    except NotFound:
        return
    message = str((current.get("status") or {}).get("message") or "")
    if PORT_IN_USE in message:
        await session.store.delete(kind.kind, name)
        raise SkupperError(f'{kind.kind} "{name}" was not created', message) from None


async def update(target: Target, kind: Kind, name: str, changes: dict[str, Any], wait: str,
                 timeout: float) -> None:
    from skupper.cli.session import open_session, require_running
    from skupper.store.interface import NotFound

    async with open_session(target) as session:
        try:
            current = await session.store.get(kind.kind, name)
        except NotFound:
            raise _not_found(kind, name, target.namespace) from None
        if wait != "none":
            require_running(session)
        current.setdefault("spec", {}).update(changes)
        since = await session.store.current_version()
        updated = await session.store.update(current)
        if wait != "none":
            await _wait(session, kind, name, wait, timeout, since,
                        int(updated["metadata"].get("generation", 1)), "update")


async def delete(target: Target, kind: Kind, name: str, timeout: float) -> None:
    from skupper.cli.session import open_session
    from skupper.store.interface import NotFound

    async with open_session(target) as session:
        click.echo("Waiting for deletion to complete...")
        try:
            await session.store.delete(kind.kind, name)
        except NotFound:
            raise _not_found(kind, name, target.namespace) from None
    click.echo(f'{kind.kind} "{name}" is deleted.')


async def status(target: Target, kind: Kind, name: str | None, output: str | None) -> None:
    from skupper.cli.output import resources, table
    from skupper.cli.session import open_session
    from skupper.store.interface import NotFound

    async with open_session(target) as session:
        if name:
            try:
                items = [await session.store.get(kind.kind, name)]
            except NotFound:
                raise _not_found(kind, name, target.namespace) from None
        else:
            items = await session.store.list(kind.kind)
        running = session.platform.running()
    if output:
        resources(items, output, single=bool(name))
        return
    if not items:
        click.echo(f'There are no {kind.word}s in namespace "{target.namespace}".')
        return
    rows = []
    for item in items:
        spec, st = item.get("spec") or {}, item.get("status") or {}
        rows.append([
            item["metadata"]["name"],
            st.get("status", "Pending") if running else "Stopped",
            spec.get("routingKey", ""), spec.get("host", ""), spec.get("port", ""),
            str(bool(st.get(kind.match_flag))).lower(),
            st.get("message", "") if running else "the site daemon is not running",
        ])
    table(["NAME", "STATUS", "ROUTING-KEY", "HOST", "PORT", kind.match_column, "MESSAGE"],
          rows)


def build_group(kind: Kind, help_text: str) -> click.Group:
    """The click group for one kind; each command only imports what it runs."""

    @click.group(kind.word, help=help_text)
    def group() -> None:
        pass

    wait_option = click.option(
        "--wait", type=click.Choice(WAIT_CHOICES), default="configured", show_default=True,
        help=f"Wait for the {kind.word} to reach this state (none: do not wait).")
    type_option = click.option("--type", "type_", type=click.Choice(TYPES), default=None,
                               help=f"The {kind.word} type (only tcp).")

    def spec_options(func: Any) -> Any:
        """The flags that shape the resource: create and generate take the same ones."""
        for decorate in reversed([
            click.argument("name", callback=name_callback(kind.word, LABEL_LENGTH)),
            click.argument("port"),
            click.option("-r", "--routing-key", default=None,
                         help=f"The identifier that matches listeners and connectors "
                              f"(default: the {kind.word} name)."),
            click.option("--host", default=None,
                         help=f"The hostname or IP address of the {kind.word} "
                              f"(default: {kind.default_host})."),
            type_option,
        ]):
            func = decorate(func)
        return func

    @group.command("create", help=f"Create a {kind.word}.")
    @spec_options
    @wait_option
    @timeout_option()
    @output_option
    @context_options
    def create_command(name: str, port: str, routing_key: str | None, host: str | None,
                       type_: str | None, wait: str, timeout: str, output: str | None,
                       target: Target) -> None:
        resource = from_flags(kind, name, port, routing_key, host, type_)
        if output:
            from skupper.cli.output import resources

            resources([resource], output, single=True)
            return
        seconds = duration_value(timeout, "--timeout")
        run(create(target, kind, resource, wait, seconds))

    @group.command(
        "generate", cls=ReferenceCommand,
        help=f"Generate a {kind.word} resource.\n\nPrint the {kind.kind} resource that "
             f'"skupper {kind.word} create" would create, without creating anything. '
             'Apply it with "skupper system apply -f".',
        short_help=f"Generate a {kind.word} resource.",
        arguments={"name": f"The name of the {kind.word} resource.",
                   "port": f"The port of the {kind.word}."},
        examples=[(f"Generate a {kind.word}", f"skupper {kind.word} generate backend 8080"),
                  ("Generate it as JSON into a file",
                   f"skupper {kind.word} generate backend 8080 -o json > backend.json")])
    @spec_options
    @click.option("-o", "--output", type=click.Choice(["json", "yaml"]), default="yaml",
                  show_default=True, help="Print the resource as yaml or json.")
    @context_options
    def generate_command(name: str, port: str, routing_key: str | None, host: str | None,
                         type_: str | None, output: str, target: Target) -> None:
        from skupper.cli.output import resources

        resources([from_flags(kind, name, port, routing_key, host, type_)], output,
                  single=True)

    @group.command("update", help=f"Change a {kind.word}.")
    @click.argument("name", callback=name_callback(kind.word, LABEL_LENGTH))
    @click.option("-r", "--routing-key", default=None, help="A new routing key.")
    @click.option("--host", default=None, help="A new hostname or IP address.")
    @click.option("--port", default=None, help="A new port.")
    @type_option
    @wait_option
    @timeout_option()
    @context_options
    def update_command(name: str, routing_key: str | None, host: str | None,
                       port: str | None, type_: str | None, wait: str, timeout: str,
                       target: Target) -> None:
        changes: dict[str, Any] = {}
        if routing_key is not None:
            check_routing_key(routing_key)
            changes["routingKey"] = routing_key
        if host is not None:
            check_host(host)
            changes["host"] = host
        if port is not None:
            changes["port"] = port_value(port, f"{kind.word} port")
        if type_:
            changes["type"] = type_
        seconds = duration_value(timeout, "--timeout")
        run(update(target, kind, name, changes, wait, seconds))

    @group.command("delete", help=f"Delete a {kind.word}.")
    @click.argument("name", callback=name_callback(kind.word, LABEL_LENGTH))
    @timeout_option()
    @context_options
    def delete_command(name: str, timeout: str, target: Target) -> None:
        duration_value(timeout, "--timeout")
        run(delete(target, kind, name, 0))

    @group.command("status", help=f"Show the status of {kind.word}s in the current site.")
    @click.argument("name", required=False, callback=name_callback(kind.word, LABEL_LENGTH))
    @output_option
    @context_options
    def status_command(name: str | None, output: str | None, target: Target) -> None:
        run(status(target, kind, name, output))

    return group
