"""The AccessToken file that ``access-token issue`` writes and ``redeem`` reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from skupper.base.errors import SkupperError
from skupper.base.files import write_private
from skupper.resources import API_VERSION, Resource


def token_from_grant(grant: Resource, link_cost: int) -> Resource:
    status = grant.get("status") or {}
    return {
        "apiVersion": API_VERSION,
        "kind": "AccessToken",
        "metadata": {"name": grant["metadata"]["name"]},
        "spec": {
            "ca": status["ca"],
            "code": status["code"],
            "linkCost": link_cost,
            "url": status["url"],
        },
    }


def render_token(token: Resource) -> str:
    import yaml

    class _Dumper(yaml.SafeDumper):
        pass

    def _str(dumper: yaml.SafeDumper, value: str) -> Any:
        # PEM blocks read best as literal blocks, as upstream writes them.
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Dumper.add_representer(str, _str)
    return yaml.dump(token, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def check_token_destination(file: str) -> Path | None:
    """Refuse a destination that cannot be written, before any grant is created.

    ``-`` means standard output (returns None).
    """
    if file == "-":
        return None
    path = Path(file).expanduser()
    if path.is_dir():
        raise SkupperError(
            f"Cannot write token file {file}", "it is a directory", "Give a file name."
        )
    folder = path.parent
    if not folder.is_dir():
        raise SkupperError(
            f"Cannot write token file {file}",
            f"the folder {folder} does not exist",
            "Create it or choose another path.",
        )
    import os

    if not os.access(folder, os.W_OK | os.X_OK):
        raise SkupperError(
            f"Cannot write token file {file}", f"the folder {folder} is not writable"
        )
    return path


def write_token(path: Path, token: Resource) -> None:
    try:
        write_private(path, render_token(token))
    except OSError as exc:
        raise SkupperError(f"Cannot write token file {path}", exc.strerror or str(exc)) from exc
