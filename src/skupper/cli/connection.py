"""``skupper connection status``: the open and recently closed connections of this site."""

from __future__ import annotations

from typing import Any

import click

from skupper.cli.options import Target, context_options, output_option, run


@click.group(help="Show the application connections of this site.")
def connection() -> None:
    pass


@connection.command("status", help="List open and recently closed connections per service.")
@output_option
@context_options
def status(output: str | None, target: Target) -> None:
    from skupper.cli.observer_client import fetch_json, observer_info

    info = run(observer_info(target))
    records: list[dict[str, Any]] = fetch_json(info, "/connections")["connections"]
    if output:
        from skupper.cli.output import print_document

        print_document({"connections": records}, output)
        return
    if not records:
        click.echo(f'There are no connections in namespace "{target.namespace}".')
        return
    from skupper.cli.output import table

    table(["ROUTING-KEY", "CLIENT", "SITES", "BYTES-IN", "BYTES-OUT", "DURATION", "STATE"],
          [[r["routingKey"], r["client"] or "-", " > ".join(r["sites"]), r["bytesIn"],
            r["bytesOut"], f"{r['duration']:.1f}s", r["state"]] for r in records])
