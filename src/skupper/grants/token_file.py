"""The AccessToken file that ``access-token issue`` writes and ``redeem`` reads."""

from __future__ import annotations

import json
import re
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


# A plain YAML scalar that no YAML reader takes for anything but this string: it starts
# with a letter (so never a YAML 1.1 number, date or sexagesimal) and is no boolean.
_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9._/-]*(:[A-Za-z0-9._/-]+)*")
_NOT_STRINGS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def _scalar(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TypeError(f"a token holds strings and integers, not {type(value).__name__}")
    if isinstance(value, int):
        return str(value)
    if _PLAIN.fullmatch(value) and value.lower() not in _NOT_STRINGS:
        return value
    return json.dumps(value)  # a JSON string is a valid double-quoted YAML scalar


def _block(value: str, indent: str) -> str:
    """A PEM block as a literal block scalar, as upstream writes it."""
    lines = value.splitlines()
    chomp = "" if value.endswith("\n") and not value.endswith("\n\n") else "-"
    return f"|{chomp}\n" + "".join(f"{indent}{line}\n" if line else "\n" for line in lines)


def render_token(token: Resource) -> str:
    """The token file's YAML, written by hand: the access-token path skips PyYAML's import.

    The shape is fixed (an AccessToken); tests read it back with PyYAML.
    """
    out = [f"apiVersion: {_scalar(token['apiVersion'])}\n", f"kind: {_scalar(token['kind'])}\n",
           "metadata:\n", f"  name: {_scalar(token['metadata']['name'])}\n", "spec:\n"]
    for key, value in token["spec"].items():
        if isinstance(value, str) and "\n" in value:
            out.append(f"  {key}: {_block(value, '    ')}")
        else:
            out.append(f"  {key}: {_scalar(value)}\n")
    return "".join(out)


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


# A token is about 1 KiB; anything far larger is not a token.
MAX_TOKEN_FILE_BYTES = 64 * 1024


def _bad(file: str, why: str, hint: str = "") -> SkupperError:
    return SkupperError(f"Cannot use token file {file}", why, hint)


def _load_single_document(file: str, text: str) -> Any:
    import yaml

    class _NoAliases(yaml.SafeLoader):
        """Aliases have no place in a token; refusing them defuses alias bombs."""

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                raise yaml.YAMLError("YAML aliases are not allowed in a token")
            return super().compose_node(parent, index)

    try:
        documents = [doc for doc in yaml.load_all(text, Loader=_NoAliases) if doc is not None]
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid YAML"
        raise _bad(file, f"it is not valid YAML ({first})") from None
    except RecursionError:
        # PyYAML composes nested collections recursively; a token is three levels deep.
        raise _bad(file, "it is nested far too deeply to be a token") from None
    if len(documents) != 1:
        raise _bad(file, f"it holds {len(documents)} YAML documents; a token is exactly one")
    return documents[0]


def parse_token(file: str) -> Resource:
    """Read and check a token file; every problem is one clear SkupperError."""
    path = Path(file).expanduser()
    try:
        if path.is_dir():
            raise _bad(file, "it is a directory")
        size = path.stat().st_size
        if size > MAX_TOKEN_FILE_BYTES:
            raise _bad(file, f"it is {size} bytes; a token is a few KiB at most")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise _bad(file, "no such file") from None
    except PermissionError:
        raise _bad(file, "permission denied") from None
    except OSError as exc:
        raise _bad(file, exc.strerror or str(exc)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad(file, "it is not a text file") from None
    if not text.strip():
        raise _bad(file, "it is empty")
    token = _load_single_document(file, text)
    return check_token(file, token)


def check_token(file: str, token: Any) -> Resource:
    if not isinstance(token, dict):
        raise _bad(file, "it is not an AccessToken resource")
    if token.get("kind") != "AccessToken":
        raise _bad(file, f"its kind is {token.get('kind')!r}, not 'AccessToken'")
    if not str(token.get("apiVersion", "")).startswith("skupper.io/"):
        raise _bad(file, f"its apiVersion {token.get('apiVersion')!r} is not skupper.io")
    meta = token.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        raise _bad(file, "it has no metadata.name")
    from skupper.resources.model import valid_name

    if not valid_name(meta["name"]) or len(meta["name"]) > 63:
        raise _bad(file, f"metadata.name {meta['name']!r} is not a valid resource name")
    spec = token.get("spec")
    if not isinstance(spec, dict):
        raise _bad(file, "it has no spec")
    for key in ("url", "code", "ca"):
        if not isinstance(spec.get(key), str) or not spec[key].strip():
            raise _bad(file, f"spec.{key} is missing or not a string")
    cost = spec.get("linkCost", 1)
    if isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
        raise _bad(file, "spec.linkCost must be a whole number of at least 1")
    _check_url(file, spec["url"])
    _check_ca(file, spec["ca"])
    return token


def _check_url(file: str, url: str) -> None:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        _ = parts.port  # raises for a port that is not a number
    except ValueError as exc:
        raise _bad(file, f"spec.url is not a valid URL ({exc})") from None
    if parts.scheme != "https":
        raise _bad(file, f"spec.url must be https, not {parts.scheme or 'missing'!r}",
                   "A token is only redeemed over TLS.")
    if not parts.hostname:
        raise _bad(file, "spec.url has no host")


def _check_ca(file: str, ca: str) -> None:
    import ssl

    if "-----BEGIN CERTIFICATE-----" not in ca or not ca.isascii():
        raise _bad(file, "spec.ca is not a PEM certificate")
    try:
        ssl.create_default_context(cadata=ca)
    except (ssl.SSLError, ValueError):
        raise _bad(file, "spec.ca is not a valid PEM certificate") from None
    from skupper.certs.issue import is_ca_certificate

    if not is_ca_certificate(ca.encode()):
        raise _bad(file, "spec.ca is a certificate but not a CA certificate",
                   "The token may have been altered; ask for a new one.")
