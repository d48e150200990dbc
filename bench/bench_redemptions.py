"""Benchmark: redemptions per second at 1, 8 and 64 concurrent redeemers, beside a baseline.

    /work/main/.venv/bin/python bench/bench_redemptions.py [--quick] [--keep]

A real site daemon (``skupper site create west --enable-link-access``) in a hermetic temp
home; one grant allowing 1,000,000 redemptions for an hour. For each concurrency level a
fresh load-client process runs that many asyncio workers; every request is a NEW TLS 1.3
connection trusting only the token's CA, a minimal HTTP/1.1 ``POST /<grant id>`` with the
raw code, unique ``name`` and ``subject`` headers and ``Connection: close`` — what a real
redeemer sends. The baseline is a minimal asyncio TLS 1.3 server in its own process
(same certificate kind, same ``server_context`` builder) answering the same request with
a 3-byte 200, loaded by the same client: what this machine can do for "new TLS
connection + tiny HTTP exchange" in Python. Levels alternate baseline, daemon.

Bounded: a fixed number of requests per level and a time cap, a timeout per request and
per subprocess; the baseline server exits by itself. Loopback only. Every daemon and
child process is stopped by pid on exit (bench/common.py). After the load, the grant's
count must equal the 200s the clients saw. The Markdown table goes to stdout, progress
to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import select
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import common
from common import LOOPBACK, PYTHON, Hermetic, Row, median, ms, p90

SCRIPT = str(Path(__file__).resolve())
LEVELS = (1, 8, 64)
REQUEST_TIMEOUT = 10.0
# The baseline server exits by itself after this long, even if orphaned.
BASELINE_LIFETIME = 300.0
MAX_ANSWER = 64 * 1024


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- the load client (its own process) ---------------------------------------------------


async def _post(ctx: ssl.SSLContext, port: int, path: str, code: bytes,
                name: str) -> int:
    reader, writer = await asyncio.open_connection(LOOPBACK, port, ssl=ctx,
                                                   server_hostname=LOOPBACK)
    try:
        writer.write((f"POST {path} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\nname: {name}\r\n"
                      f"subject: {name}\r\nContent-Length: {len(code)}\r\n"
                      "Connection: close\r\n\r\n").encode() + code)
        await writer.drain()
        answer = await reader.read(MAX_ANSWER)
        while chunk := await reader.read(MAX_ANSWER):  # read to the server's close
            answer += chunk
        return int(answer.split(b" ", 2)[1])
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 2.0)


async def _load(cfg: dict[str, Any]) -> dict[str, Any]:
    url = urlsplit(cfg["url"])
    if url.hostname != LOOPBACK:
        raise SystemExit(f"refusing to load a non-loopback host: {url.hostname}")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(cadata=cfg["ca"])
    port, path, code = int(url.port or 443), url.path or "/", cfg["code"].encode()
    statuses: dict[str, int] = {}
    errors: dict[str, int] = {}
    latencies: list[float] = []

    async def one(name: str, timed: bool) -> None:
        started = time.perf_counter()
        try:
            status = await asyncio.wait_for(_post(ctx, port, path, code, name),
                                            REQUEST_TIMEOUT)
        except Exception as exc:  # a failed request is a result, not a crash
            key = f"{type(exc).__name__}: {exc}"[:100]
            errors[key] = errors.get(key, 0) + 1
            return
        if timed:
            latencies.append(time.perf_counter() - started)
            statuses[str(status)] = statuses.get(str(status), 0) + 1

    prefix, concurrency = cfg["prefix"], cfg["concurrency"]
    # Untimed warm-up, one per worker: lazy imports, first handshakes.
    await asyncio.gather(*(one(f"{prefix}w{i}", False) for i in range(concurrency)))
    warm_errors = dict(errors)
    errors.clear()
    sent = 0
    start = time.perf_counter()
    deadline = start + cfg["seconds"]
    finished = start

    async def worker() -> None:
        nonlocal sent, finished
        while sent < cfg["total"] and time.perf_counter() < deadline:
            sent += 1
            await one(f"{prefix}{sent}", True)
            finished = time.perf_counter()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = max(finished - start, 1e-9)
    ok = statuses.get("200", 0)
    return {"sent": sent, "ok": ok, "statuses": statuses, "errors": errors,
            "warm_errors": warm_errors, "elapsed": elapsed, "rate": ok / elapsed,
            "p50": median(latencies) if latencies else 0.0,
            "p90": p90(latencies) if latencies else 0.0}


# --- the baseline server (its own process) -----------------------------------------------


async def _baseline(folder: Path) -> None:
    from skupper.base.net import bind_listening
    from skupper.certs.issue import generate_ca, issue_certificate
    from skupper.certs.tls import server_context

    ca = generate_ca("bench baseline CA")
    leaf = issue_certificate(ca, LOOPBACK, usage="server", hosts=[LOOPBACK])
    (folder / "baseline-ca.pem").write_bytes(ca.cert_pem)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP, and a socket
        # from bind_listening has proto 0: without this, Nagle and delayed ACKs add ~40 ms
        # to every exchange (aiohttp, in the grant server, sets it itself).
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            if length:
                await reader.readexactly(int(length.group(1)))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    sock = bind_listening(LOOPBACK, 0)
    server = await asyncio.start_server(
        handle, sock=sock, ssl=server_context(leaf.cert_pem, leaf.key_pem))
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    async with server:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), BASELINE_LIFETIME)


# --- the run -------------------------------------------------------------------------------


def _client(h: Hermetic, cfg: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [PYTHON, SCRIPT, "--role", "client", json.dumps(cfg)], env=h.env,
        capture_output=True, text=True, stdin=subprocess.DEVNULL,
        timeout=cfg["seconds"] + 60, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"load client failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _start_baseline(h: Hermetic) -> int:
    child = h.spawn([PYTHON, SCRIPT, "--role", "baseline", str(h.home)],
                    stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], 30.0)
    line = child.stdout.readline().decode() if ready else ""
    if not line.startswith("PORT "):
        raise RuntimeError(f"the baseline server did not start: {line!r}")
    return int(line.split()[1])


def _clean(result: dict[str, Any]) -> bool:
    return (not result["errors"] and not result["warm_errors"]
            and set(result["statuses"]) == {"200"} and result["ok"] > 0)


def _text(result: dict[str, Any]) -> str:
    text = (f"{result['rate']:.1f}/s ({result['ok']} x 200 in {result['elapsed']:.1f}s, "
            f"p50 {ms(result['p50'])}, p90 {ms(result['p90'])})")
    if not _clean(result):
        text += (f"; NOT ALL 200: {result['statuses']} errors {result['errors']} "
                 f"warm-up errors {result['warm_errors']}")
    return text


def run(args: argparse.Namespace) -> int:
    levels = [int(x) for x in args.levels.split(",")]
    rows: list[Row] = []
    with common.hermetic(prefix="skupper-bench-redeem-", keep=args.keep) as h:
        log(f"home: {h.home}")
        h.skupper("site", "create", "west", "--enable-link-access")
        token_file = h.home / "token.yaml"
        h.skupper("access-token", "issue", str(token_file), "--redemptions-allowed",
                  "1000000", "--expiration-period", "1h")
        import yaml

        token = yaml.safe_load(token_file.read_text())
        spec, grant = token["spec"], token["metadata"]["name"]
        port = _start_baseline(h)
        baseline_ca = (h.home / "baseline-ca.pem").read_text()
        seen = 0
        for level in levels:
            common_cfg = {"concurrency": level, "total": args.total, "seconds": args.seconds,
                          "code": spec["code"]}
            base = _client(h, {**common_cfg, "url": f"https://{LOOPBACK}:{port}/bench",
                               "ca": baseline_ca, "prefix": f"base-c{level}-"})
            log(f"[{level:>2} concurrent] baseline {_text(base)}")
            ours = _client(h, {**common_cfg, "url": spec["url"], "ca": spec["ca"],
                               "prefix": f"bench-c{level}-"})
            log(f"[{level:>2} concurrent] daemon   {_text(ours)}")
            seen += ours["ok"] + level  # the warm-up requests redeem too
            ratio = ours["rate"] / base["rate"] if base["rate"] else 0.0
            rows.append(Row(f"redemptions/s, {level} concurrent, new TLS 1.3 conn each",
                            _text(ours), f"minimal asyncio TLS server {_text(base)}",
                            f"{ratio:.0%}", "every answer 200", _clean(ours)))
        done = h.skupper("access-grant", "status", grant, "-o", "json")
        counted = int(json.loads(done.stdout)["status"]["redemptions"])
        exact = counted == seen
        log(f"grant count {counted}, 200s seen (with warm-ups) {seen}: "
            f"{'exact' if exact else 'MISMATCH'}")
        rows.append(Row("grant count after the load", str(counted),
                        f"200s the clients saw: {seen}", "-", "equal", exact))
    print(common.markdown_table(rows))
    print()
    print("\n".join(common.machine_info()))
    return 0 if all(row.met for row in rows) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=["client", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("config", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)))
    parser.add_argument("--total", type=int, default=800, help="requests per level (800)")
    parser.add_argument("--seconds", type=float, default=8.0, help="time cap per level (8 s)")
    parser.add_argument("--quick", action="store_true", help="150 requests, 3 s per level")
    parser.add_argument("--keep", action="store_true", help="keep the temp home and its logs")
    args = parser.parse_args()
    if args.role == "client":
        print(json.dumps(asyncio.run(_load(json.loads(args.config)))))
        return 0
    if args.role == "baseline":
        asyncio.run(_baseline(Path(args.config)))
        return 0
    if args.quick:
        args.total, args.seconds = 150, 3.0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
