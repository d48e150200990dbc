"""``skupper site``: create, update, status, delete (and start/stop as aliases)."""

from __future__ import annotations

import os
from collections.abc import Callable
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
from skupper.resources.fields import LINK_ACCESS_TYPES

WAIT_CHOICES = ("ready", "configured", "none")


@click.group(help="Create, change, inspect and delete the site of a namespace.")
def site() -> None:
    pass


def _link_access(enable: bool | None, access_type: str | None) -> str | None:
    if access_type is not None:
        if enable is False and access_type != "none":
            raise UsageError("--disable-link-access contradicts --link-access-type")
        return access_type
    if enable is None:
        return None
    return "default" if enable else "none"


_CURRENT_SITE = ("The name of the site resource. If not specified, the name is that of the "
                 "site associated with the current namespace.")


def spec_options(func: Any) -> Any:
    """The flags that shape the Site: create and generate take the same ones."""
    for decorate in reversed([
        click.argument("name", metavar="<name>", callback=name_callback("site", LABEL_LENGTH)),
        click.option("--enable-link-access", is_flag=True, default=False,
                     help="Allow access for incoming links from remote sites."),
        click.option("--link-access-type", type=click.Choice(LINK_ACCESS_TYPES), default=None,
                     help="Configure external access for links from remote sites."),
        click.option("--link-access-host", default=None,
                     help="Host name or address remote sites use to reach this site "
                          "(default: SKUPPER_LINK_ACCESS_HOST, else this machine's FQDN)."),
    ]):
        func = decorate(func)
    return func


def from_flags(name: str, enable_link_access: bool, link_access_type: str | None,
               link_access_host: str | None) -> dict[str, Any]:
    """The Site ``create`` stores and ``generate`` prints, from the same flags."""
    from skupper.resources.build import site_resource

    return site_resource(name, _link_access(enable_link_access or None, link_access_type),
                         link_access_host or os.environ.get("SKUPPER_LINK_ACCESS_HOST"))


@site.command("create", cls=ReferenceCommand, help="Create a site.",
              arguments={"name": "A name of your choice for the Skupper site. This name is "
                                 "displayed in the console and CLI output."},
              examples=[("Create a site", "skupper site create west"),
                        ("Create a site that can accept links from remote sites",
                         "skupper site create west --enable-link-access"),
                        ("Create a site and return at once, without waiting for it",
                         "skupper site create west --wait none")])
@spec_options
@output_option
@click.option("--wait", type=click.Choice(WAIT_CHOICES), default="ready", show_default=True,
              help="Wait for the site to reach this state: ready (running and reachable), "
                   "configured (the daemon took the site), or none (do not wait).")
@timeout_option()
@context_options
def create(
    name: str,
    enable_link_access: bool,
    link_access_type: str | None,
    link_access_host: str | None,
    output: str | None,
    wait: str,
    timeout: str,
    target: Target,
) -> None:
    seconds = duration_value(timeout, "--timeout")
    resource = from_flags(name, enable_link_access, link_access_type, link_access_host)
    if output:
        from skupper.cli.output import resources

        resources([resource], output, single=True)
        return
    if resource["spec"]["linkAccess"] != "none" and not link_access_host \
            and not os.environ.get("SKUPPER_LINK_ACCESS_HOST"):
        _warn_if_unreachable(target)
    run(create_site(target, resource, wait, seconds))
    if wait == "none":
        click.echo(f'Site "{name}" is created.')
    else:
        click.echo(f'Site "{name}" is {wait}.')


@site.command("generate", cls=ReferenceCommand, help=(
                  "Generate a site resource.\n\nPrint the Site resource that \"skupper site "
                  "create\" would create, without creating anything. Apply it with "
                  "\"skupper system apply -f\"."),
              short_help="Generate a site resource.",
              arguments={"name": "A name of your choice for the Skupper site. This name is "
                                 "displayed in the console and CLI output."},
              examples=[("Generate a site", "skupper site generate west"),
                        ("Generate a site that accepts links, into a file",
                         "skupper site generate west --enable-link-access > west.yaml")])
@spec_options
@click.option("-o", "--output", type=click.Choice(["json", "yaml"]), default="yaml",
              show_default=True, help="Print the resource as yaml or json.")
@context_options
def generate(name: str, enable_link_access: bool, link_access_type: str | None,
             link_access_host: str | None, output: str, target: Target) -> None:
    from skupper.cli.output import resources

    resources([from_flags(name, enable_link_access, link_access_type, link_access_host)],
              output, single=True)


def _warn_if_unreachable(target: Target) -> None:
    """Link access on a default host that only this machine can reach: say so, once."""
    from skupper.base.net import only_loopback

    default = target.platform().default_link_access_host()
    if default and only_loopback(default):
        click.echo(f'Warning: remote sites will not reach this site at "{default}" (this '
                   "machine's name resolves only to a loopback address). Give the name or "
                   "address they use with --link-access-host (or SKUPPER_LINK_ACCESS_HOST).",
                   err=True)


def site_reached(wait: str) -> Callable[[dict[str, Any]], bool]:
    """Whether a Site is in the state ``--wait`` asks for (ready or configured)."""
    from skupper.resources.status import get_condition, is_ready

    if wait == "ready":
        return is_ready

    def configured(resource: dict[str, Any]) -> bool:
        cond = get_condition(resource, "Configured")
        return bool(cond and cond.get("status") == "True")

    return configured


async def create_site(target: Target, resource: dict[str, Any], wait: str,
                      timeout: float) -> None:
    """Store the Site, start its daemon and wait as ``wait`` says (``system apply`` too)."""
    from skupper.cli.session import open_session, wait_until

    async with open_session(target, create=True) as session:
        if session.site is not None:
            raise SkupperError(
                "A site resource already exists",
                f'site "{session.site["metadata"]["name"]}" is defined in namespace '
                f'"{target.namespace}"',
                'Change it with "skupper site update" or remove it with "skupper site delete".',
            )
        since = await session.store.current_version()
        await session.store.create(resource)
        session.platform.start()
        if wait == "none":
            return
        click.echo("Waiting for status...")
        name = str(resource["metadata"]["name"])
        await wait_until(session, "Site", name, site_reached(wait), timeout, since=since,
                         what=f'Site "{name}"')


@site.command("update", cls=ReferenceCommand, help="Change site settings.",
              arguments={"name": _CURRENT_SITE},
              examples=[("Update the site to accept links",
                         "skupper site update --enable-link-access"),
                        ("Tell remote sites where to reach this one",
                         "skupper site update --link-access-host west.example.com")])
@click.argument("name", required=False, metavar="[name]",
                callback=name_callback("site", LABEL_LENGTH))
@click.option("--enable-link-access/--disable-link-access", default=None,
              help="Allow or refuse incoming links from remote sites.")
@click.option("--link-access-type", type=click.Choice(LINK_ACCESS_TYPES), default=None,
              help="Configure external access for links from remote sites.")
@click.option("--link-access-host", default=None,
              help="Host name or address remote sites use to reach this site.")
@timeout_option()
@context_options
def update(
    name: str | None,
    enable_link_access: bool | None,
    link_access_type: str | None,
    link_access_host: str | None,
    timeout: str,
    target: Target,
) -> None:
    wait = duration_value(timeout, "--timeout")
    site_name = run(_update(target, name, _link_access(enable_link_access, link_access_type),
                            link_access_host, wait))
    click.echo(f'Site "{site_name}" is updated.')


async def _update(
    target: Target, name: str | None, link_access: str | None, host: str | None, wait: float
) -> str:
    from skupper.cli.session import no_site_error, open_session, require_running, wait_until
    from skupper.resources.status import get_condition, is_ready

    async with open_session(target) as session:
        current = session.site
        if current is None or (name and current["metadata"]["name"] != name):
            raise no_site_error(target.namespace, "to update")
        require_running(session)
        spec = current.setdefault("spec", {})
        if link_access is not None:
            spec["linkAccess"] = link_access
        if host:
            spec.setdefault("settings", {})["link-access-host"] = host
        since = await session.store.current_version()
        before = current["metadata"].get("generation")
        updated = await session.store.update(current)
        site_name = str(updated["metadata"]["name"])
        generation = updated["metadata"]["generation"]
        click.echo("Waiting for update to complete...")
        if generation == before and is_ready(updated):
            return site_name  # nothing changed: there is nothing to wait for

        def applied(resource: dict[str, object]) -> bool:
            cond = get_condition(resource, "Resolved")
            return bool(cond and cond.get("observedGeneration") == generation
                        and is_ready(resource))

        await wait_until(session, "Site", site_name, applied, wait, since=since,
                         what=f'Site "{site_name}" update')
        return site_name


@site.command("status", cls=ReferenceCommand, help="Show the current status of a site.")
@output_option
@context_options
def status(output: str | None, target: Target) -> None:
    run(_status(target, output))


async def _status(target: Target, output: str | None) -> None:
    from skupper.cli.output import resources, table
    from skupper.cli.session import open_session, require_site

    async with open_session(target) as session:
        current = require_site(session)
        running = session.platform.running()
    if not running:
        _mark_stopped(current)
    if output:
        resources([current], output, single=True)
        return
    st = current.get("status") or {}
    state = st.get("status", "Pending") if running else "Stopped"
    endpoints = ", ".join(
        f"{e['name']} {e['host']}:{e['port']}" for e in st.get("endpoints") or []
    ) or "-"
    table(
        ["NAME", "STATUS", "SITES-IN-NETWORK", "SERVICES-IN-NETWORK", "LINK-ACCESS", "MESSAGE"],
        [[current["metadata"]["name"], state, st.get("sitesInNetwork", 1) if running else "-",
          _services_in_network(st) if running else "-", endpoints,
          st.get("message", "") if running else "the site daemon is not running"]],
    )


def _services_in_network(status: dict[str, Any]) -> int:
    """Distinct routing keys with a connector at some site in the (reachable) network."""
    network: list[dict[str, Any]] = status.get("network") or []
    return len({svc.get("routingKey") for entry in network
                for svc in entry.get("services") or [] if svc.get("connectors")})


def _mark_stopped(current: dict[str, object]) -> None:
    """Show what is true now: a stopped daemon runs nothing, whatever it last wrote."""
    from skupper.resources.site import SITE_REQUIRED
    from skupper.resources.status import derive_ready, set_condition

    set_condition(current, "Running", False, "Stopped", "the site daemon is not running")
    derive_ready(current, SITE_REQUIRED)


@site.command("delete", cls=ReferenceCommand,
              help="Delete a site.\n\nThe site's daemon stops and the namespace's state goes: "
                   "its listeners, connectors, links, grants, tokens and credentials too (a site "
                   "here is one namespace's store, so nothing outlives it). --all, as upstream "
                   "has it, does the same and names each resource it deletes.",
              short_help="Delete a site.",
              arguments={"name": _CURRENT_SITE},
              examples=[("Delete the site of the current namespace", "skupper site delete"),
                        ("Delete the site and say what went with it",
                         "skupper site delete --all")])
@click.argument("name", required=False, metavar="[name]",
                callback=name_callback("site", LABEL_LENGTH))
@click.option("--all", "everything", is_flag=True, default=False,
              help="Delete the site and every resource of the namespace (listeners, "
                   "connectors, links, grants, tokens), one line each.")
@context_options
def delete(name: str | None, everything: bool, target: Target) -> None:
    from skupper.cli.session import no_site_error

    platform = target.platform()
    unreadable: str | None = None
    contents: list[tuple[str, str]] = []
    try:
        site_name, contents = run(_site_contents(target)) if platform.has_state() else (None, [])
    except SkupperError as error:
        if not _is_unusable_store(error):
            raise
        # The store cannot say which site this is, but deleting is exactly what the
        # error tells the user to do: the namespace goes, whatever its store holds.
        unreadable, site_name = error.why, name
    if unreadable is None and (site_name is None or (name and name != site_name)):
        raise no_site_error(target.namespace, "to delete")
    click.echo("Waiting for deletion to complete...")
    platform.stop(remove_unit=True)
    platform.remove_state()
    if everything:
        from skupper.base.text import printable

        for kind, resource_name in contents:
            click.echo(f'{kind} "{printable(resource_name)}" is deleted.')
    if unreadable is None:
        click.echo(f'Site "{site_name}" is deleted.')
    else:
        click.echo(f'The site of namespace "{target.namespace}" is deleted '
                   f"(its store could not be read: {unreadable}).")


# What `site delete --all` names, in the order upstream's controller would let them go.
_CONTENT_KINDS = ("AccessToken", "AccessGrant", "Link", "Listener", "Connector")


def _is_unusable_store(error: SkupperError) -> bool:
    from skupper.store.sqlite import StoreUnusable  # only local stores can be damaged so

    return isinstance(error, StoreUnusable)


async def _site_contents(target: Target) -> tuple[str | None, list[tuple[str, str]]]:
    """The site's name and every other resource of the namespace, as (kind, name)."""
    from skupper.cli.session import open_session

    async with open_session(target) as session:
        if session.site is None:
            return None, []
        contents = [(kind, str(item["metadata"]["name"])) for kind in _CONTENT_KINDS
                    for item in await session.store.list(kind)]
        return str(session.site["metadata"]["name"]), contents


from skupper.cli.system import start as _start  # noqa: E402  (click-only module)
from skupper.cli.system import stop as _stop  # noqa: E402

site.add_command(_start, "start")
site.add_command(_stop, "stop")
