"""``skupper debug dump [file]``: one tarball with what a bug report needs, and no secret.

What goes in: versions (skupper, Python, the libraries, the OS), every resource of the
namespace as ``-o yaml`` prints it, the conditions of all of them as one timeline
(``events.txt``), the site's certificates (subjects, serials, validity, the PEM of each
public certificate) and the daemon's logs.

What never goes in: private keys and grant codes. Resources are redacted as every
``-o`` output is, keys are not read at all, and a last pass over every file of the dump
replaces each secret value this namespace holds (each key and each code, in the clear
and in base64) with ``<redacted>``: so even a secret that reached a log by mistake does
not reach the report. Upstream's dump copies the raw secret files.
"""

from __future__ import annotations

import base64
import io
import re
import tarfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from skupper.base.errors import SkupperError
from skupper.cli.options import Target, context_options, run
from skupper.resources.redact import REDACTED, redacted

if TYPE_CHECKING:
    from skupper.cli.session import Session
    from skupper.resources import Resource

# Each log file contributes at most its newest bytes.
LOG_TAIL_BYTES = 4 * 1024 * 1024
_PRIVATE_KEY_PEM = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.DOTALL)
# Secret data keys whose values are private keys (never read into the dump).
_KEY_FILES = ("tls.key",)


@click.group(help="Collect what a bug report needs.")
def debug() -> None:
    pass


@debug.command("dump", help="Write a tarball of versions, resources, status, events and logs, "
                            "with every private key and grant code redacted.")
@click.argument("file", required=False)
@context_options
def dump(file: str | None, target: Target) -> None:
    path = Path(file).expanduser() if file else Path(
        f"skupper-dump-{target.namespace}-{time.strftime('%Y%m%dT%H%M%S')}.tar.gz")
    if path.is_dir():
        raise SkupperError(f"Cannot write the dump {path}", "it is a directory",
                           "Give a file name.")
    files = run(_collect(target))
    _write(path, files)
    click.echo(f"Debug dump written to {path} ({len(files)} files, secrets redacted).")


async def _collect(target: Target) -> dict[str, bytes]:
    from skupper.cli.session import open_session

    async with open_session(target) as session:
        secrets: list[bytes] = []
        files: dict[str, bytes] = {"versions.yaml": _yaml(_versions(session))}
        everything: list[Resource] = []
        for kind in _kinds():
            items = await session.store.list(kind)
            everything += items
            secrets += _codes(items)
            if items:
                files[f"resources/{kind}.yaml"] = _yaml(
                    {"apiVersion": "v1", "kind": "List",
                     "items": [redacted(item) for item in items]})
        files["events.txt"] = _events(everything).encode()
        store = session.platform.open_secrets()
        for name in await store.names():
            data = await store.get(name)
            secrets += [value for key, value in data.items() if key in _KEY_FILES]
            files[f"certificates/{name}.yaml"] = _yaml(_describe(name, data))
        for log in _log_files(session):
            files[f"logs/{log.name}"] = _tail(log)
    return {path: _scrub(content, secrets) for path, content in files.items()}


def _kinds() -> tuple[str, ...]:
    from skupper.resources.model import KINDS

    return KINDS


def _versions(session: Session) -> dict[str, Any]:
    import platform
    import sys
    from importlib import metadata

    from skupper import __version__

    libraries = {}
    for name in ("click", "PyYAML", "cryptography", "aiohttp", "lightkube"):
        try:
            libraries[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            libraries[name] = "not installed"
    return {
        "skupper": __version__,
        "python": sys.version.split()[0],
        "os": platform.platform(),
        "platform": session.platform.name,
        "namespace": session.platform.namespace,
        "siteRunning": session.platform.running(),
        "libraries": libraries,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _codes(items: list[Resource]) -> list[bytes]:
    """Every grant or token code among ``items``: what the last pass must never let through."""
    found = []
    for item in items:
        for part in ("spec", "status"):
            code = (item.get(part) or {}).get("code")
            if isinstance(code, str) and code:
                found.append(code.encode())
    return found


def _events(resources: list[Resource]) -> str:
    """Every condition of every resource, oldest first: the namespace's recent history."""
    rows = []
    for resource in resources:
        for cond in (resource.get("status") or {}).get("conditions") or []:
            rows.append((str(cond.get("lastTransitionTime", "")), resource["kind"],
                         resource["metadata"]["name"], str(cond.get("type", "")),
                         str(cond.get("status", "")), str(cond.get("reason", "")),
                         str(cond.get("message", ""))))
    from skupper.base.text import printable

    lines = [" ".join(printable(cell) for cell in row[:5]) + f" {printable(row[5])}: "
             f"{printable(row[6], limit=1000)}" for row in sorted(rows)]
    return "".join(line + "\n" for line in lines)


def _describe(name: str, data: dict[str, bytes]) -> dict[str, Any]:
    """What a secret holds, with its certificates described and its key left out."""
    out: dict[str, Any] = {"name": name, "keys": sorted(data)}
    for key, value in sorted(data.items()):
        if key in _KEY_FILES:
            out[key] = REDACTED
        elif key.endswith(".crt"):
            out[key] = _certificate(value)
        else:
            out[key] = value.decode("utf-8", "replace")
    return out


def _certificate(pem: bytes) -> dict[str, Any]:
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        return {"error": "not a PEM certificate"}
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": format(cert.serial_number, "x"),
        "notBefore": cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "notAfter": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "pem": pem.decode("ascii", "replace"),
    }


def _log_files(session: Session) -> list[Path]:
    log_file = getattr(session.platform, "log_file", "")
    path = Path(str(log_file)) if log_file else None
    if path is None or not path.parent.is_dir():
        return []
    # daemon.log and its rotations, and daemon-stderr.log (what came before the log).
    return sorted(p for p in path.parent.glob("daemon*.log*") if p.is_file())


def _tail(path: Path) -> bytes:
    with path.open("rb") as handle:
        size = handle.seek(0, io.SEEK_END)
        handle.seek(max(0, size - LOG_TAIL_BYTES))
        return handle.read()


def _scrub(content: bytes, secrets: list[bytes]) -> bytes:
    """Replace every known secret, and anything shaped like a private key, with <redacted>."""
    marker = REDACTED.encode()
    text = _PRIVATE_KEY_PEM.sub(REDACTED, content.decode("utf-8", "replace")).encode()
    for secret in secrets:
        for form in (secret, base64.b64encode(secret), secret.strip()):
            if form:
                text = text.replace(form, marker)
    return text


def _yaml(doc: Any) -> bytes:
    from skupper.cli.output import to_yaml

    return to_yaml(doc).encode()


def _write(path: Path, files: dict[str, bytes]) -> None:
    """The tarball, written atomically and 0600 (it describes the site's trust)."""
    from skupper.base.files import write_private

    buffer = io.BytesIO()
    root = path.name.removesuffix(".tar.gz").removesuffix(".tgz") or "skupper-dump"
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(f"{root}/{name}")
            info.size, info.mode, info.mtime = len(content), 0o600, int(time.time())
            archive.addfile(info, io.BytesIO(content))
    try:
        write_private(path, buffer.getvalue())
    except OSError as exc:
        raise SkupperError(f"Cannot write the dump {path}", exc.strerror or str(exc)) from None
