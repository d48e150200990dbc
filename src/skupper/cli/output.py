"""Tables, json and yaml for people; secrets redacted before anything prints."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import click

from skupper.resources import Resource
from skupper.resources.redact import redacted


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Aligned columns, rows sorted by their first column (a name, or a time).

    Every cell is escaped, since names and messages may come from peers.
    """
    from skupper.base.text import printable

    body = sorted(([printable(c, limit=1000) for c in row] for row in rows),
                  key=lambda row: row[0] if row else "")
    cells = [[str(h) for h in headers], *body]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        line = "   ".join(cell.ljust(widths[i]) for i, cell in enumerate(row))
        click.echo(line.rstrip())


def print_document(doc: Any, fmt: str) -> None:
    """A document that is not a resource (network status, connection records)."""
    sys.stdout.write(json.dumps(doc, indent=2) + "\n" if fmt == "json" else to_yaml(doc))


def resources(items: list[Resource], fmt: str, *, single: bool) -> None:
    """Print one resource, or a List of them, in upstream's shape."""
    clean = [redacted(item) for item in items]
    doc: Any = clean[0] if single else {"apiVersion": "v1", "kind": "List", "items": clean}
    if fmt == "json":
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        sys.stdout.write(to_yaml(doc))


def to_yaml(doc: Any) -> str:
    """YAML with multi-line strings (PEM blocks) as literal blocks, as the token file has."""
    import yaml

    class _Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        # PyYAML itself falls back to a quoted style where a literal block cannot hold it.
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Dumper.add_representer(str, text)
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False)
