"""``skupper network status`` and ``skupper network console``: the network of this site.

``status`` reads the network the site's daemon keeps in its Site's status (so it works
on every platform, through the store), and prints sites, links and services: the same
document from any site of the network. ``console`` prints the address of the live
console the site's daemon serves, with its token, and exits.
"""

from __future__ import annotations

from typing import Any

import click

from skupper.base.errors import SkupperError
from skupper.cli.options import Target, context_options, output_option, run


@click.group(help="Show the network this site belongs to.")
def network() -> None:
    pass


@network.command("status", help="Show every site, link and service in the network.")
@output_option
@context_options
def status(output: str | None, target: Target) -> None:
    doc = run(_document(target))
    if output:
        from skupper.cli.output import print_document

        print_document(doc, output)
        return
    _print_tables(doc)


async def _document(target: Target) -> dict[str, Any]:
    from skupper.cli.session import open_session, require_site
    from skupper.resources.network import network_document

    async with open_session(target) as session:
        site = require_site(session)
        running = session.platform.running()
        observer_file = session.platform.observer_file()
    if not running:
        raise SkupperError("The site is stopped",
                           f'the site daemon for namespace "{target.namespace}" is not running, '
                           "so it knows no network",
                           f'Start it with "skupper system start -n {target.namespace}".')
    status = site.get("status") or {}
    doc = network_document(status.get("network") or [], str(site["metadata"].get("uid", "")),
                           status.get("networkLinks"))
    _add_round_trips(doc, observer_file)
    return doc


def _add_round_trips(doc: dict[str, Any], observer_file: Any) -> None:
    """This site's links' heartbeat round trips, live from its observer, where it answers."""
    import contextlib

    from skupper.cli.observer_client import fetch_json, read_info

    info = read_info(observer_file) if observer_file is not None else None  # None: in a cluster
    if info is None:
        return
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError, SkupperError):
        live = {lk["name"]: lk.get("rttSeconds") for lk in fetch_json(info, "/network")["links"]}
        for link in doc["links"]:
            if isinstance(live.get(link["name"]), (int, float)):
                link["rttSeconds"] = live[link["name"]]


def _print_tables(doc: dict[str, Any]) -> None:
    from skupper.cli.output import table

    click.echo(f"Sites in the network: {len(doc['sites'])}")
    table(["NAME", "ID", "NAMESPACE", "PLATFORM", "VERSION"],
          [[s["name"], s["id"], s["namespace"], s["platform"], s["version"]]
           for s in doc["sites"]])
    click.echo(f"\nLinks: {len(doc['links'])}")
    if doc["links"]:
        table(["FROM", "TO", "NAME", "COST", "STATE", "RTT"],
              [[lk["fromSite"], lk["toSite"], lk["name"], lk["cost"], lk["state"],
                _rtt(lk.get("rttSeconds"))] for lk in doc["links"]])
    click.echo(f"\nServices: {len(doc['services'])}")
    if doc["services"]:
        table(["ROUTING-KEY", "LISTENERS (SITE/NAME)", "CONNECTORS (SITE/NAME)"],
              [[svc["routingKey"], _ends(svc["listeners"]), _ends(svc["connectors"])]
               for svc in doc["services"]])


def _rtt(seconds: Any) -> str:
    return f"{seconds * 1000:.1f} ms" if isinstance(seconds, (int, float)) else "-"


def _ends(ends: list[dict[str, str]]) -> str:
    return ", ".join(f"{end['site']}/{end['name']}" for end in ends) or "-"


@network.command("console", help="Print the address of this site's live network console.")
@context_options
def console(target: Target) -> None:
    from skupper.cli.observer_client import observer_info

    info = run(observer_info(target))
    click.echo(info["console"])
