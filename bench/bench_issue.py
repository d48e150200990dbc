"""Benchmark: cold start, ``access-token issue`` and redemption throughput, each beside a
baseline measured in the same run. Loopback only; every daemon started is stopped.

    /work/main/.venv/bin/python bench/bench_issue.py [--quick] [--check]

See bench/README.md for what each figure means. The ``--role`` modes are internal: the
load client and the baseline TLS server run as separate processes so that both
throughput comparisons have the same shape (client process -> server process).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import select
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import common
from common import LOOPBACK, PYTHON, SKUPPER, Hermetic, Row, median, ms, p90, time_once

SCRIPT = str(Path(__file__).resolve())
COLD_TARGET = 4.0
ISSUE_TARGET = 7.0  # issue 14 (it was 10x: issue 2)
REDEEM_TARGET = 0.40
# The baseline server exits by itself after this long, even if orphaned.
BASELINE_SERVER_LIFETIME = 120.0
REQUEST_TIMEOUT = 10.0


# --- the load client (runs in its own process) -----------------------------------------


def _client_context(ca_pem: str) -> ssl.SSLContext:
    """What a redeemer does: TLS 1.3, trust only the token's CA, check the host name."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=ca_pem)
    return ctx


async def _post(
    ctx: ssl.SSLContext, host: str, port: int, path: str, code: bytes, name: str
) -> tuple[int, bytes]:
    """One redemption on a NEW TLS connection: status and body."""
    reader, writer = await asyncio.open_connection(host, port, ssl=ctx, server_hostname=host)
    try:
        writer.write(
            (
                f"POST {path} HTTP/1.1\r\n"
                f"Host: {host}:{port}\r\n"
                f"name: {name}\r\n"
                "subject: bench\r\n"
                f"Content-Length: {len(code)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode()
            + code
        )
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == "content-length":
                length = int(value.strip())
        body = await reader.readexactly(length) if length else await reader.read()
        return status, body
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 2.0)


async def _load(cfg: dict[str, Any]) -> dict[str, Any]:
    url = urlsplit(cfg["url"])
    host, port, path = url.hostname or LOOPBACK, int(url.port or 443), url.path or "/"
    if host != LOOPBACK:
        raise SystemExit(f"refusing to load a non-loopback host: {host}")
    ctx = _client_context(Path(cfg["ca_file"]).read_text())
    code = cfg["code"].encode()
    statuses: dict[str, int] = {}
    errors: dict[str, int] = {}
    samples: list[str] = []
    latencies: list[float] = []

    async def one(name: str, record: bool) -> None:
        started = time.perf_counter()
        try:
            status, body = await asyncio.wait_for(
                _post(ctx, host, port, path, code, name), REQUEST_TIMEOUT
            )
        except Exception as exc:  # a failed request is a result, not a crash
            key = f"{type(exc).__name__}: {exc}"[:120]
            errors[key] = errors.get(key, 0) + 1
            return
        if record:
            latencies.append(time.perf_counter() - started)
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        if status != 200 and len(samples) < 5:
            samples.append(f"{status}: {body[:200].decode(errors='replace').strip()}")

    # Warm-up: one request per worker, not timed (lazy imports, first connections).
    prefix = cfg["prefix"]  # names stay unique across rounds: bench-r<round>-<i>
    await asyncio.gather(*(one(f"{prefix}w{i}", False) for i in range(cfg["warmup"])))
    warm = dict(statuses)
    statuses.clear()

    total, concurrency = cfg["total"], cfg["concurrency"]
    next_index = 0
    start = time.perf_counter()
    deadline = start + cfg["seconds"]
    finished_at = start

    async def worker() -> None:
        nonlocal next_index, finished_at
        while next_index < total and time.perf_counter() < deadline:
            index = next_index
            next_index += 1
            await one(f"{prefix}{index}", True)
            finished_at = time.perf_counter()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = max(finished_at - start, 1e-9)
    ok = statuses.get("200", 0)
    return {
        "sent": next_index,
        "ok": ok,
        "statuses": statuses,
        "warmup_statuses": warm,
        "errors": errors,
        "samples": samples,
        "elapsed": elapsed,
        "rate": ok / elapsed,
        "latencies": [round(x, 6) for x in latencies],
    }


def run_client(cfg_json: str) -> int:
    result = asyncio.run(_load(json.loads(cfg_json)))
    print(json.dumps(result))
    return 0


# --- the baseline server (runs in its own process) -------------------------------------


_BASELINE_RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: 3\r\n"
    b"Connection: close\r\n\r\n"
    b"ok\n"
)


async def _baseline_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.decode("latin-1").split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == "content-length":
                length = int(value.strip())
        if length:
            await reader.readexactly(length)
        writer.write(_BASELINE_RESPONSE)
        await writer.drain()
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _baseline_serve(folder: Path) -> None:
    from skupper.base.net import bind_listening
    from skupper.certs.issue import generate_ca, issue_certificate
    from skupper.certs.tls import server_context

    ca = generate_ca("bench baseline CA")
    leaf = issue_certificate(ca, LOOPBACK, usage="server", hosts=[LOOPBACK])
    (folder / "baseline-ca.pem").write_bytes(ca.cert_pem)
    # The same TLS 1.3 server context builder the daemon's grant server uses.
    ctx = server_context(leaf.cert_pem, leaf.key_pem)
    sock = bind_listening(LOOPBACK, 0)  # same backlog (512) as the grant server
    server = await asyncio.start_server(_baseline_handler, sock=sock, ssl=ctx)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    async with server:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), BASELINE_SERVER_LIFETIME)


def run_baseline_server(folder: str) -> int:
    asyncio.run(_baseline_serve(Path(folder)))
    return 0


# --- the figures -----------------------------------------------------------------------


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def figure_cold_start(h: Hermetic, runs: int) -> Row:
    help_argv, bare_argv = [SKUPPER, "--help"], [PYTHON, "-c", "pass"]
    for _ in range(2):  # warm the page cache and the bytecode caches
        time_once(help_argv, h.env)
        time_once(bare_argv, h.env)
    helps: list[float] = []
    bares: list[float] = []
    for _ in range(runs):  # interleaved, so drift hits both alike
        helps.append(time_once(help_argv, h.env))
        bares.append(time_once(bare_argv, h.env))
    ratio = median(helps) / median(bares)
    log(f"[1] skupper --help: median {ms(median(helps))} p90 {ms(p90(helps))}; "
        f"python -c pass: median {ms(median(bares))} p90 {ms(p90(bares))}; ratio {ratio:.2f}x")
    return Row(
        "1. cold start `skupper --help`",
        f"median {ms(median(helps))}, p90 {ms(p90(helps))} (n={runs})",
        f"`python -c pass` median {ms(median(bares))}, p90 {ms(p90(bares))}",
        f"{ratio:.2f}x",
        f"≤ {COLD_TARGET:g}x",
        ratio <= COLD_TARGET,
    )


_GRANT_READY = re.compile(r'Grant "([^"]+)" is ready')


def figure_issue(h: Hermetic, runs: int) -> Row:
    tokens = h.home / "tokens"
    tokens.mkdir()
    bare_argv = [PYTHON, "-c", "pass"]
    issues: list[float] = []
    bares: list[float] = []
    names: list[str] = []
    # One untimed issue first: the daemon's first grant pays its lazy imports.
    warm = h.skupper("access-token", "issue", str(tokens / "warm.yaml"))
    names += _GRANT_READY.findall(warm.stdout)
    time_once(bare_argv, h.env)
    for i in range(runs):
        argv = [SKUPPER, "access-token", "issue", str(tokens / f"token-{i}.yaml")]
        start = time.perf_counter()
        done = subprocess.run(
            argv, env=h.env, capture_output=True, text=True, timeout=60, check=False,
            stdin=subprocess.DEVNULL,
        )
        issues.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise RuntimeError(f"access-token issue failed: {done.stderr}")
        if not (tokens / f"token-{i}.yaml").is_file():
            raise RuntimeError("access-token issue wrote no token file")
        names += _GRANT_READY.findall(done.stdout)
        bares.append(time_once(bare_argv, h.env))
    # Untimed: leave only the redemption grant for figure 3.
    for name in names:
        h.skupper("access-grant", "delete", name)
    ratio = median(issues) / median(bares)
    log(f"[2] access-token issue: median {ms(median(issues))} p90 {ms(p90(issues))}; "
        f"python -c pass median {ms(median(bares))}; ratio {ratio:.2f}x; "
        f"deleted {len(names)} grants")
    return Row(
        "2. `skupper access-token issue <file>`",
        f"median {ms(median(issues))}, p90 {ms(p90(issues))} (n={runs})",
        f"`python -c pass` median {ms(median(bares))}",
        f"{ratio:.2f}x",
        f"≤ {ISSUE_TARGET:g}x",
        ratio <= ISSUE_TARGET,
    )


def _run_client(h: Hermetic, cfg: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [PYTHON, SCRIPT, "--role", "client", json.dumps(cfg)],
        env=h.env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
        timeout=cfg["seconds"] + 60, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"load client failed ({done.returncode}): {done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _start_baseline_server(h: Hermetic) -> tuple[subprocess.Popen[bytes], int]:
    child = h.spawn(
        [PYTHON, SCRIPT, "--role", "baseline-server", str(h.home)],
        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
    )
    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], 30.0)
    line = child.stdout.readline().decode() if ready else ""
    if not line.startswith("PORT "):
        raise RuntimeError(f"baseline server did not start: {line!r}")
    return child, int(line.split()[1])


def _merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds of one server added up: rate is all 200s over all timed seconds."""
    merged: dict[str, Any] = {
        "sent": 0, "ok": 0, "elapsed": 0.0, "statuses": {}, "warmup_statuses": {},
        "errors": {}, "samples": [], "latencies": [], "round_rates": [],
    }
    for r in results:
        merged["sent"] += r["sent"]
        merged["ok"] += r["ok"]
        merged["elapsed"] += r["elapsed"]
        for key in ("statuses", "warmup_statuses", "errors"):
            for k, v in r[key].items():
                merged[key][k] = merged[key].get(k, 0) + v
        merged["samples"] += r["samples"]
        merged["latencies"] += r["latencies"]
        merged["round_rates"].append(r["rate"])
    merged["rate"] = merged["ok"] / merged["elapsed"] if merged["elapsed"] else 0.0
    return merged


def _describe(result: dict[str, Any]) -> str:
    rounds = ", ".join(f"{x:.1f}" for x in result["round_rates"])
    text = (f"{result['ok']}/{result['sent']} x 200 in {result['elapsed']:.2f}s = "
            f"{result['rate']:.1f}/s (rounds: {rounds})")
    if result["latencies"]:
        text += (f", latency p50 {ms(median(result['latencies']))} "
                 f"p90 {ms(p90(result['latencies']))}")
    bad = {k: v for k, v in result["statuses"].items() if k != "200"}
    warm_bad = {k: v for k, v in result["warmup_statuses"].items() if k != "200"}
    if bad or warm_bad or result["errors"]:
        text += f"; NON-200: {bad} warm-up {warm_bad} errors {result['errors']}"
        text += f" samples {result['samples'][:5]}"
    return text


def _all_ok(result: dict[str, Any]) -> bool:
    statuses, warm = result["statuses"], result["warmup_statuses"]
    return (
        not result["errors"]
        and set(statuses) <= {"200"}
        and set(warm) <= {"200"}
        and result["ok"] > 0
    )


def figure_redemptions(
    h: Hermetic, total: int, seconds: float, concurrency: int, rounds: int,
    py_spy: str | None,
) -> Row:
    token_file = h.home / "redeem-token.yaml"
    done = h.skupper(
        "access-token", "issue", str(token_file),
        "--redemptions-allowed", "100000", "--expiration-period", "1h",
    )
    grant_name = _GRANT_READY.findall(done.stdout)[0]
    import yaml  # type: ignore[import-untyped,unused-ignore]  # the project's dependency

    spec = yaml.safe_load(token_file.read_text())["spec"]
    ca_file = h.home / "token-ca.pem"
    ca_file.write_text(spec["ca"])
    per_round = {"total": max(1, total // rounds), "seconds": seconds / rounds,
                 "concurrency": concurrency, "warmup": concurrency, "code": spec["code"]}
    daemon_target = {"url": spec["url"], "ca_file": str(ca_file)}

    # Baseline: the same client against a minimal TLS 1.3 server in its own process.
    # Rounds alternate baseline, daemon, baseline, daemon...: background load that drifts
    # during the run hits both sides alike. Each round is a fresh client process.
    server, port = _start_baseline_server(h)
    baseline_target = {"url": f"https://{LOOPBACK}:{port}/bench",
                       "ca_file": str(h.home / "baseline-ca.pem")}
    baseline_runs: list[dict[str, Any]] = []
    daemon_runs: list[dict[str, Any]] = []
    try:
        for r in range(rounds):
            baseline_runs.append(_run_client(
                h, {**per_round, **baseline_target, "prefix": f"bench-r{r}-"}
            ))
            profiler = None
            if py_spy and r == 0:  # the first daemon round only
                fmt = {".json": "speedscope", ".svg": "flamegraph"}.get(
                    Path(py_spy).suffix, "raw"
                )
                profiler = h.spawn(
                    [str(common.VENV_BIN / "py-spy"), "record", "--pid", str(h.daemon_pid()),
                     "--threads", "--idle", "--duration", str(int(per_round["seconds"]) + 2),
                     "--rate", "250", "--format", fmt, "--output", py_spy],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
                time.sleep(1.0)
            daemon_runs.append(_run_client(
                h, {**per_round, **daemon_target, "prefix": f"bench-r{r}-"}
            ))
            if profiler is not None:
                profiler.wait(timeout=per_round["seconds"] + 30)
    finally:
        server.terminate()
        server.wait(timeout=10)
    baseline, daemon = _merge(baseline_runs), _merge(daemon_runs)
    log(f"[3] baseline TLS server: {_describe(baseline)}")
    log(f"[3] daemon grant server: {_describe(daemon)}")

    # The count must match what the client saw: every 200 was one counted redemption.
    status = json.loads(h.skupper("access-grant", "status", grant_name, "-o", "json").stdout)
    counted = int((status.get("status") or {}).get("redemptions", -1))
    expected = daemon["warmup_statuses"].get("200", 0) + daemon["ok"]
    if counted != expected:
        log(f"[3] WARNING: grant counts {counted} redemptions, client saw {expected} 200s")

    fraction = daemon["rate"] / baseline["rate"] if baseline["rate"] else 0.0
    valid = _all_ok(daemon) and _all_ok(baseline) and counted == expected
    note = "" if valid else " (INVALID: non-200s, errors or count mismatch; see log)"
    lat = ms(median(daemon["latencies"])) if daemon["latencies"] else "-"
    return Row(
        f"3. redemptions/s, {concurrency} concurrent, new TLS 1.3 conn each",
        f"{daemon['rate']:.1f}/s ({daemon['ok']} x 200 in {daemon['elapsed']:.1f}s, "
        f"p50 {lat}){note}",
        f"minimal asyncio TLS server {baseline['rate']:.1f} req/s "
        f"({baseline['ok']} x 200 in {baseline['elapsed']:.1f}s)",
        f"{fraction:.1%}",
        f"≥ {REDEEM_TARGET:.0%}",
        (fraction >= REDEEM_TARGET) if valid else False,
    )


def run_bench(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    rows: list[Row] = []
    with common.hermetic(keep=args.keep) as h:
        log(f"data home: {h.home}")
        rows.append(figure_cold_start(h, args.cold_runs))
        t0 = time.perf_counter()
        h.skupper("site", "create", "west", "--enable-link-access")
        log(f"site create west: {time.perf_counter() - t0:.2f}s, daemon pid {h.daemon_pid()}")
        rows.append(figure_issue(h, args.issue_runs))
        rows.append(figure_redemptions(
            h, args.total, args.seconds, args.concurrency, args.rounds, args.py_spy
        ))
    print()
    print(common.markdown_table(rows))
    print()
    print("Machine:")
    for line in common.machine_info():
        print(line)
    print(f"- bench wall time: {time.perf_counter() - started:.1f}s")
    if args.check and not all(row.met for row in rows):
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=["bench", "client", "baseline-server"],
                        default="bench", help=argparse.SUPPRESS)
    parser.add_argument("role_arg", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("--cold-runs", type=int, default=20)
    parser.add_argument("--issue-runs", type=int, default=15)
    parser.add_argument("--total", type=int, default=2000,
                        help="redemption requests per server (default 2000)")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="time cap per server for the redemption load (default 10)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternating baseline/daemon rounds that share --total and "
                             "--seconds (default 2)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: few runs, 200 requests, 3s cap")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if any target is missed")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temp data home (daemon log) after the run")
    parser.add_argument("--py-spy", metavar="OUT", default=None,
                        help="record the daemon with py-spy under the redemption load "
                             "(OUT.json: speedscope, OUT.svg: flamegraph, else collapsed "
                             "stacks); needs `pip install py-spy` in the venv")
    args = parser.parse_args(argv)
    if args.role == "client":
        return run_client(args.role_arg)
    if args.role == "baseline-server":
        return run_baseline_server(args.role_arg)
    if args.quick:
        args.cold_runs, args.issue_runs, args.total, args.seconds = 5, 3, 200, 3.0
    if min(args.rounds, args.cold_runs, args.issue_runs, args.total, args.concurrency) < 1:
        parser.error("--rounds, --cold-runs, --issue-runs, --total, --concurrency must be >= 1")
    os.chdir(common.REPO)
    try:
        return run_bench(args)
    except (common.Terminated, KeyboardInterrupt) as exc:
        log(f"interrupted ({exc or 'SIGINT'}); every daemon started was stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
