"""The AccessToken file that ``access-token issue`` writes and ``redeem`` reads."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from skupper.base.errors import SkupperError
from skupper.base.files import (
    DIRECTORY,
    REGULAR_FILE,
    NotARegularFile,
    regular_file_kind,
    write_private,
)
from skupper.base.text import is_printable, printable
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

    ``-`` means standard output (returns None). Only a regular file (replaced
    atomically) or a new file is written: a symbolic link, a FIFO, a device, a socket
    or a folder is refused, so ``/dev/null``, ``/dev/stdout`` or ``/proc/self/fd/1``
    are never replaced and nothing is written through a link into another file.
    Folders on the way to the file may be links; the file itself may not.
    """
    if file == "-":
        return None
    path = Path(file).expanduser()
    _check_kind(file, path)
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


def _check_kind(file: str, path: Path) -> None:
    try:
        kind = regular_file_kind(path)
    except OSError as exc:
        raise SkupperError(f"Cannot write token file {file}", exc.strerror or str(exc)) from None
    if kind is not None and kind != REGULAR_FILE:
        raise _not_regular(file, NotARegularFile(path, kind))


def _not_regular(file: str | Path, exc: NotARegularFile) -> SkupperError:
    hint = "Give a file name." if exc.kind == DIRECTORY else (
        "Give a file name, or - for standard output.")
    return SkupperError(f"Cannot write token file {file}", exc.strerror or "", hint)


def write_token(path: Path, token: Resource) -> None:
    try:
        write_private(path, render_token(token))
    except NotARegularFile as exc:
        raise _not_regular(path, exc) from None
    except OSError as exc:
        raise SkupperError(f"Cannot write token file {path}", exc.strerror or str(exc)) from exc


# A token is about 1 KiB; anything far larger is not a token.
MAX_TOKEN_FILE_BYTES = 64 * 1024


def _bad(file: str, why: str, hint: str = "") -> SkupperError:
    return _refuse(f"token file {file}", why, hint)


def _refuse(what: str, why: str, hint: str = "") -> SkupperError:
    return SkupperError(f"Cannot use {what}", why, hint)


def load_documents(text: str | bytes) -> list[Any]:
    """The YAML documents in ``text`` (empty ones dropped), aliases refused.

    For what comes from outside (token files, grant server answers): aliases have no
    place there, and refusing them defuses alias bombs. Raises yaml.YAMLError,
    ValueError (numbers past Python's digit limit, impossible dates) or RecursionError.
    """
    import yaml

    class _NoAliases(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                raise yaml.YAMLError("YAML aliases are not allowed in a token")
            return super().compose_node(parent, index)

    return [doc for doc in yaml.load_all(text, Loader=_NoAliases) if doc is not None]


def _load_single_document(file: str, text: str) -> Any:
    import yaml

    try:
        documents = load_documents(text)
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid YAML"
        raise _bad(file, f"it is not valid YAML ({printable(first, 120)})") from None
    except ValueError as exc:
        # PyYAML builds ints and dates itself: a number past Python's digit limit or an
        # impossible date raises ValueError from inside the loader.
        why = ("a number in it has far too many digits" if "digits" in str(exc)
               else f"a value in it cannot be read ({printable(exc, 120)})")
        raise _bad(file, why) from None
    except RecursionError:
        # PyYAML composes nested collections recursively; a token is three levels deep.
        raise _bad(file, "it is nested far too deeply to be a token") from None
    if len(documents) != 1:
        raise _bad(file, f"it holds {len(documents)} YAML documents; a token is exactly one")
    return documents[0]


def parse_token(file: str) -> Resource:
    """Read and check a token file (``-``: standard input); every problem is one clear
    SkupperError."""
    if file == "-":
        import sys

        raw = sys.stdin.buffer.read(MAX_TOKEN_FILE_BYTES + 1)
        if len(raw) > MAX_TOKEN_FILE_BYTES:
            raise _bad("from standard input", f"it is over {MAX_TOKEN_FILE_BYTES} bytes; a "
                                              "token is a few KiB at most")
        return _parse_text("from standard input", raw)
    path = Path(file).expanduser()
    try:
        if path.is_dir():
            raise _bad(file, "it is a directory")
        size = path.stat().st_size
        if size > MAX_TOKEN_FILE_BYTES:
            raise _bad(file, f"it is {size} bytes; a token is a few KiB at most")
        # Bounded whatever the file is: /dev/zero or a pipe report no size and never end.
        with path.open("rb") as handle:
            raw = handle.read(MAX_TOKEN_FILE_BYTES + 1)
        if len(raw) > MAX_TOKEN_FILE_BYTES:
            raise _bad(file, f"it is over {MAX_TOKEN_FILE_BYTES} bytes; a token is a few KiB "
                             "at most")
    except FileNotFoundError:
        raise _bad(file, "no such file") from None
    except PermissionError:
        raise _bad(file, "permission denied") from None
    except OSError as exc:
        raise _bad(file, exc.strerror or str(exc)) from None
    return _parse_text(file, raw)


def _parse_text(file: str, raw: bytes) -> Resource:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad(file, "it is not a text file") from None
    if not text.strip():
        raise _bad(file, "it is empty")
    token = _load_single_document(file, text)
    return check_token(file, token)


def check_token(file: str, token: Any) -> Resource:
    """``token`` (read from ``file``) if it is a usable AccessToken; else one SkupperError."""
    return check_access_token(token, f"token file {file}")


def check_access_token(token: Any, what: str) -> Resource:
    """Check an AccessToken resource; errors read "Cannot use <what>: ...".

    The same checks for a token file and for an AccessToken applied to a cluster.
    """
    if not isinstance(token, dict):
        raise _refuse(what, "it is not an AccessToken resource")
    if token.get("kind") != "AccessToken":
        raise _refuse(what, f"its kind is {printable(repr(token.get('kind')), 60)}, "
                            "not 'AccessToken'")
    if not str(token.get("apiVersion", "")).startswith("skupper.io/"):
        raise _refuse(what, f"its apiVersion {printable(repr(token.get('apiVersion')), 60)} "
                            "is not skupper.io")
    meta = token.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        raise _refuse(what, "it has no metadata.name")
    check_link_name(meta["name"], what)
    spec = token.get("spec")
    if not isinstance(spec, dict):
        raise _refuse(what, "it has no spec")
    for key in ("url", "code", "ca"):
        if not isinstance(spec.get(key), str) or not spec[key].strip():
            raise _refuse(what, f"spec.{key} is missing or not a string")
    link_cost(spec, what)
    _check_url(what, spec["url"])
    _check_ca(what, spec["ca"])
    return token


# A token's name becomes the `name` header, the Secret that keeps the link's credentials
# and the Link's name (or <name>-N). Grants are named "<site>-<uuid>", so a long site
# name makes a long token name; 200 leaves room for "-N" within Kubernetes' 253 and for
# the secret store's version folder (".<name>.<12 hex>") within a file name's 255.
MAX_TOKEN_NAME = 200


def check_link_name(name: str, what: str) -> None:
    """Refuse a token name that is not a resource name or that names a site credential."""
    from skupper.resources.model import valid_name
    from skupper.resources.site import SITE_CREDENTIAL_PREFIX, is_site_credential

    if len(name) > MAX_TOKEN_NAME or not valid_name(name):
        raise _refuse(what, f"metadata.name {printable(repr(name), 80)} is not a valid "
                            "resource name")
    if is_site_credential(name):
        raise _refuse(what, f'metadata.name "{name}" starts with "{SITE_CREDENTIAL_PREFIX}", '
                            "which is reserved for the site's own credentials",
                      "The token may have been altered; ask for a new one.")


def link_cost(spec: dict[str, Any], what: str) -> int:
    """The token's spec.linkCost (1 when absent), a whole number in 1..MAX_LINK_COST."""
    from skupper.resources.model import MAX_LINK_COST

    cost = spec.get("linkCost", 1)
    if isinstance(cost, bool) or not isinstance(cost, int) or not 1 <= cost <= MAX_LINK_COST:
        raise _refuse(what, f"spec.linkCost must be a whole number from 1 to {MAX_LINK_COST}")
    return cost


def _check_url(what: str, url: str) -> None:
    from urllib.parse import urlsplit

    if len(url) > MAX_URL_LENGTH or not url.isascii() or not is_printable(url) or " " in url:
        raise _refuse(what, "spec.url is not a valid URL (too long, or control or "
                            "non-ASCII characters)")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises for a port that is not a number or out of range
    except ValueError as exc:
        raise _refuse(what, f"spec.url is not a valid URL ({printable(exc, 80)})") from None
    if parts.port == 0:
        raise _refuse(what, "spec.url is not a valid URL (port 0)")
    if parts.scheme != "https":
        raise _refuse(what, f"spec.url must be https, not {parts.scheme or 'missing'!r}",
                      "A token is only redeemed over TLS.")
    if "@" in parts.netloc:
        raise _refuse(what, "spec.url carries user information (user:password@); a token's "
                            "URL never does", "The token may have been altered; ask for a "
                            "new one.")
    if not parts.hostname:
        raise _refuse(what, "spec.url has no host")


# A grant URL is https://host:port/<uuid>: a few hundred characters at most.
MAX_URL_LENGTH = 2048


def _check_ca(what: str, ca: str) -> None:
    import ssl

    if "-----BEGIN CERTIFICATE-----" not in ca or not ca.isascii():
        raise _refuse(what, "spec.ca is not a PEM certificate")
    try:
        ssl.create_default_context(cadata=ca)
    except (ssl.SSLError, ValueError):
        raise _refuse(what, "spec.ca is not a valid PEM certificate") from None
    from skupper.certs.issue import is_ca_certificate

    if not is_ca_certificate(ca.encode()):
        raise _refuse(what, "spec.ca is a certificate but not a CA certificate",
                      "The token may have been altered; ask for a new one.")
