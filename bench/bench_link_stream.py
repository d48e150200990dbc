"""Benchmark: bulk throughput of one link stream, beside a bare asyncio TLS pipe.

    .venv/bin/python bench/bench_link_stream.py [--mib 256] [--rounds 3]

Both figures use the same shape: a receiver process that reads and discards, a sender
process that writes ``--mib`` MiB in 64 KiB writes, TLS 1.3 with P-256 certificates on
127.0.0.1. (a) bare: the bytes go straight over the TLS stream. (b) link: the same bytes
go over one yamux stream of a LinkConnection (mutual TLS, hello, flow control), as
site links carry them. The receiver answers one byte at the end, so the time counts
delivery, not just buffering.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import ssl
import statistics
import sys
import time
from typing import Any

from skupper.certs.issue import KeyPair, generate_ca, issue_certificate
from skupper.certs.tls import client_context, server_context
from skupper.router.link import LinkConnection
from skupper.router.link_transport import LinkProtocol, dial_tls
from skupper.router.stream import LinkStream

CHUNK = 64 * 1024
# Hellos as sites send them (router.hello checks both: a UUID, a DNS-1123 name).
HELLO = {"siteId": "11111111-1111-4111-8111-111111111111", "siteName": "bench-receiver"}
CLIENT_HELLO = {"siteId": "22222222-2222-4222-8222-222222222222", "siteName": "bench",
                "link": "bench-link"}
# The receiver gives up after this long, so an orphaned process always ends.
RECEIVER_LIFETIME_SECONDS = 120.0


def _pki() -> tuple[KeyPair, KeyPair, KeyPair]:
    ca = generate_ca("bench CA")
    server = issue_certificate(ca, "127.0.0.1", usage="server", hosts=["127.0.0.1"])
    client = issue_certificate(ca, "bench", usage="client")
    return ca, server, client


def _receiver(mode: str, pki: tuple[KeyPair, KeyPair, KeyPair], ready: Any) -> None:
    ca, server, _ = pki

    async def main() -> None:
        tls = server_context(server.cert_pem, server.key_pem, client_ca_pem=ca.cert_pem)
        done = asyncio.Event()

        async def discard_stream(stream: LinkStream) -> None:
            while await stream.read(1 << 20):
                pass
            await stream.write(b"!")
            await stream.close()

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            total = 0
            while chunk := await reader.read(1 << 20):
                total += len(chunk)
                if chunk.endswith(b"\n") and total % CHUNK == 1:
                    break
            writer.write(b"!")
            await writer.drain()
            writer.close()

        async def on_link(protocol: LinkProtocol) -> None:
            link = LinkConnection(protocol, is_client=False, local_hello=HELLO,
                                  on_stream=discard_stream)
            await link.start()
            await link.wait_closed()
            await link.aclose("done")

        handlers: list[asyncio.Future[None]] = []
        if mode == "bare":
            srv = await asyncio.start_server(on_connect, "127.0.0.1", 0, ssl=tls)
        else:
            srv = await asyncio.get_running_loop().create_server(
                lambda: LinkProtocol(lambda made: handlers.append(
                    asyncio.ensure_future(on_link(made)))),
                "127.0.0.1", 0, ssl=tls)
        ready.send(srv.sockets[0].getsockname()[1])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), RECEIVER_LIFETIME_SECONDS)
        srv.close()

    asyncio.run(main())


async def _send(mode: str, port: int, pki: tuple[KeyPair, KeyPair, KeyPair], mib: int) -> float:
    ca, _, client = pki
    tls: ssl.SSLContext = client_context(ca.cert_pem, cert_pem=client.cert_pem,
                                         key_pem=client.key_pem)
    payload = b"x" * CHUNK
    count = mib * 1024 * 1024 // CHUNK
    if mode == "bare":
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls,
                                                       server_hostname="127.0.0.1")
        start = time.perf_counter()
        for _ in range(count):
            writer.write(payload)
            await writer.drain()
        writer.write(b"\n")  # one byte past a whole number of chunks marks the end
        await writer.drain()
        await reader.readexactly(1)
        elapsed = time.perf_counter() - start
        writer.close()
        return elapsed
    link = LinkConnection(await dial_tls("127.0.0.1", port, tls), is_client=True,
                          local_hello=CLIENT_HELLO)
    await link.start()
    stream = link.open_stream()
    start = time.perf_counter()
    for _ in range(count):
        await stream.write(payload)
    await stream.close()
    await stream.read(1)
    elapsed = time.perf_counter() - start
    await link.aclose("done")
    return elapsed


def measure(mode: str, mib: int, pki: tuple[KeyPair, KeyPair, KeyPair]) -> float:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    receiver = ctx.Process(target=_receiver, args=(mode, pki, child), daemon=True)
    receiver.start()
    try:
        port = parent.recv()
        elapsed = asyncio.run(_send(mode, port, pki, mib))
    finally:
        receiver.terminate()
        receiver.join(5)
    return mib / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    pki = _pki()
    results: dict[str, list[float]] = {"bare": [], "link": []}
    for _ in range(args.rounds):
        for mode in ("bare", "link"):
            results[mode].append(measure(mode, args.mib, pki))
    bare = statistics.median(results["bare"])
    link = statistics.median(results["link"])
    print("| figure | MiB/s (median) | runs |")
    print("|---|---|---|")
    bare_runs = ", ".join(f"{v:.0f}" for v in results["bare"])
    print(f"| bare asyncio TLS pipe | {bare:.0f} | {bare_runs} |")
    print(f"| one link stream (yamux over mutual TLS) | {link:.0f} | "
          f"{', '.join(f'{v:.0f}' for v in results['link'])} |")
    print(f"\nlink / bare: {link / bare:.0%} ({args.mib} MiB per run, {args.rounds} rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
