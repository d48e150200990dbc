"""TLS contexts exercised with real handshakes over loopback."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from skupper.certs.issue import KeyPair, generate_ca, issue_certificate
from skupper.certs.tls import (
    client_context,
    client_context_from_files,
    peer_certificate_serial,
    server_context,
    server_context_from_files,
)

HOST = "127.0.0.1"
TIMEOUT = 10.0
PING = b"ping\n"
ECHO = b"echo:ping\n"


@dataclass(frozen=True)
class Pki:
    server_ca: KeyPair  # signs the server certificate; clients trust it
    client_ca: KeyPair  # signs client certificates; the server trusts it
    other_ca: KeyPair  # trusted by nobody
    server: KeyPair
    client: KeyPair


@pytest.fixture(scope="module")
def pki() -> Pki:
    server_ca = generate_ca("server-ca")
    client_ca = generate_ca("client-ca")
    return Pki(
        server_ca=server_ca,
        client_ca=client_ca,
        other_ca=generate_ca("other-ca"),
        server=issue_certificate(server_ca, "server", usage="server", hosts=[HOST, "::1"]),
        client=issue_certificate(client_ca, "client", usage="client"),
    )


@dataclass
class Result:
    version: str | None = None
    reply: bytes = b""
    error: BaseException | None = None

    @property
    def exchanged(self) -> bool:
        return self.error is None and self.reply == ECHO


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def _exchange(
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    *,
    server_hostname: str | None = HOST,
) -> tuple[Result, list[int | None]]:
    """Serve one echo on loopback, connect once, report what the client got and the
    serials the server saw (empty if the server never accepted a connection)."""
    seen: list[int | None] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            seen.append(peer_certificate_serial(writer.get_extra_info("ssl_object")))
            line = await reader.readline()
            writer.write(b"echo:" + line)
            await writer.drain()
        finally:
            await _close(writer)

    server = await asyncio.start_server(handle, HOST, 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    result = Result()
    try:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    HOST, port, ssl=client_ctx, server_hostname=server_hostname
                ),
                TIMEOUT,
            )
        except TimeoutError:
            raise
        except (OSError, EOFError) as exc:
            result.error = exc
        else:
            try:
                result.version = writer.get_extra_info("ssl_object").version()
                writer.write(PING)
                await writer.drain()
                result.reply = await asyncio.wait_for(reader.readline(), TIMEOUT)
            except TimeoutError:
                raise
            except (OSError, EOFError) as exc:
                result.error = exc
            finally:
                await _close(writer)
    finally:
        server.close()
        await server.wait_closed()
    return result, seen


def _run(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, *, server_hostname: str | None = HOST
) -> tuple[Result, list[int | None]]:
    return asyncio.run(_exchange(server_ctx, client_ctx, server_hostname=server_hostname))


def _mtls_server(pki: Pki) -> ssl.SSLContext:
    return server_context(
        pki.server.cert_pem, pki.server.key_pem, client_ca_pem=pki.client_ca.cert_pem
    )


def test_mutual_tls_13_handshake_and_server_sees_client_serial(pki: Pki) -> None:
    client_ctx = client_context(
        pki.server_ca.cert_pem, cert_pem=pki.client.cert_pem, key_pem=pki.client.key_pem
    )
    result, seen = _run(_mtls_server(pki), client_ctx)
    assert result.error is None
    assert result.version == "TLSv1.3"
    assert result.reply == ECHO
    assert seen == [pki.client.serial]


def test_client_cert_from_another_ca_is_refused(pki: Pki) -> None:
    stranger = issue_certificate(pki.other_ca, "client", usage="client")
    client_ctx = client_context(
        pki.server_ca.cert_pem, cert_pem=stranger.cert_pem, key_pem=stranger.key_pem
    )
    result, seen = _run(_mtls_server(pki), client_ctx)
    assert not result.exchanged
    assert seen == []


def test_missing_client_cert_is_refused(pki: Pki) -> None:
    result, seen = _run(_mtls_server(pki), client_context(pki.server_ca.cert_pem))
    assert not result.exchanged
    assert seen == []


def test_server_cert_presented_as_client_cert_is_refused(pki: Pki) -> None:
    # Issued by the trusted client CA, but for serverAuth only.
    wrong_usage = issue_certificate(pki.client_ca, "client", usage="server")
    client_ctx = client_context(
        pki.server_ca.cert_pem, cert_pem=wrong_usage.cert_pem, key_pem=wrong_usage.key_pem
    )
    result, seen = _run(_mtls_server(pki), client_ctx)
    assert not result.exchanged
    assert seen == []


def test_client_trusting_another_ca_refuses_server(pki: Pki) -> None:
    client_ctx = client_context(
        pki.other_ca.cert_pem, cert_pem=pki.client.cert_pem, key_pem=pki.client.key_pem
    )
    result, seen = _run(_mtls_server(pki), client_ctx)
    assert isinstance(result.error, ssl.SSLCertVerificationError)
    assert not result.exchanged
    assert seen == []


def test_tls12_client_is_refused(pki: Pki) -> None:
    client_ctx = client_context(
        pki.server_ca.cert_pem, cert_pem=pki.client.cert_pem, key_pem=pki.client.key_pem
    )
    client_ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    client_ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    result, seen = _run(_mtls_server(pki), client_ctx)
    assert result.error is not None  # alert or reset, depending on timing
    assert result.version is None
    assert seen == []


def test_server_without_client_ca_accepts_anonymous_client(pki: Pki) -> None:
    server_ctx = server_context(pki.server.cert_pem, pki.server.key_pem)
    result, seen = _run(server_ctx, client_context(pki.server_ca.cert_pem))
    assert result.exchanged
    assert result.version == "TLSv1.3"
    assert seen == [None]


def test_hostname_check_accepts_ip_san(pki: Pki) -> None:
    server_ctx = server_context(pki.server.cert_pem, pki.server.key_pem)
    client_ctx = client_context(pki.server_ca.cert_pem, check_hostname=True)
    result, _ = _run(server_ctx, client_ctx, server_hostname=HOST)
    assert result.exchanged


def test_hostname_check_rejects_name_not_in_sans(pki: Pki) -> None:
    named = issue_certificate(pki.server_ca, "example.com", usage="server", hosts=["example.com"])
    server_ctx = server_context(named.cert_pem, named.key_pem)
    strict = client_context(pki.server_ca.cert_pem, check_hostname=True)
    result, _ = _run(server_ctx, strict, server_hostname=HOST)
    assert isinstance(result.error, ssl.SSLCertVerificationError)
    assert not result.exchanged

    lax = client_context(pki.server_ca.cert_pem, check_hostname=False)
    result, _ = _run(server_ctx, lax, server_hostname=None)
    assert result.exchanged


def test_contexts_from_files(pki: Pki, tmp_path: Path) -> None:
    files = {
        "server.crt": pki.server.cert_pem,
        "server.key": pki.server.key_pem,
        "client.crt": pki.client.cert_pem,
        "client.key": pki.client.key_pem,
        "server-ca.crt": pki.server_ca.cert_pem,
        "client-ca.crt": pki.client_ca.cert_pem,
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    server_ctx = server_context_from_files(
        tmp_path / "server.crt", tmp_path / "server.key", client_ca_file=tmp_path / "client-ca.crt"
    )
    client_ctx = client_context_from_files(
        tmp_path / "server-ca.crt", tmp_path / "client.crt", tmp_path / "client.key"
    )
    result, seen = _run(server_ctx, client_ctx)
    assert result.exchanged
    assert result.version == "TLSv1.3"
    assert seen == [pki.client.serial]

    anonymous = client_context_from_files(tmp_path / "server-ca.crt")
    result, seen = _run(server_ctx, anonymous)
    assert not result.exchanged
    assert seen == []


def test_context_settings(pki: Pki) -> None:
    server_ctx = _mtls_server(pki)
    assert server_ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    assert server_ctx.verify_mode == ssl.CERT_REQUIRED
    assert [ca["subject"] for ca in server_ctx.get_ca_certs()] == [
        ((("commonName", "client-ca"),),)
    ]
    assert server_context(pki.server.cert_pem, pki.server.key_pem).verify_mode == ssl.CERT_NONE

    client_ctx = client_context(pki.server_ca.cert_pem)
    assert client_ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    assert client_ctx.verify_mode == ssl.CERT_REQUIRED
    assert client_ctx.check_hostname
    assert len(client_ctx.get_ca_certs()) == 1  # no system store
    assert not client_context(pki.server_ca.cert_pem, check_hostname=False).check_hostname


def test_client_cert_and_key_go_together(pki: Pki) -> None:
    with pytest.raises(ValueError):
        client_context(pki.server_ca.cert_pem, cert_pem=pki.client.cert_pem)
    with pytest.raises(ValueError):
        client_context(pki.server_ca.cert_pem, key_pem=pki.client.key_pem)


def test_temporary_key_files_are_private_and_removed(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    server_context(pki.server.cert_pem, pki.server.key_pem)
    assert list(tmp_path.iterdir()) == []

    # A key that does not match the certificate fails to load; the folder still goes.
    with pytest.raises(ssl.SSLError):
        server_context(pki.server.cert_pem, pki.client.key_pem)
    assert list(tmp_path.iterdir()) == []


def test_peer_certificate_serial_without_peer() -> None:
    assert peer_certificate_serial(None) is None
