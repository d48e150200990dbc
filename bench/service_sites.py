"""The sites, certificates and ports the service benches build, and what they read of
their daemons (CPU time, memory, event loop) from /proc."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from common import LOOPBACK, Hermetic

# utime and stime are fields 14 and 15 of /proc/<pid>/stat; after the ")" that ends the
# command name they are the 12th and 13th. They count every thread of the process.
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: Iterable[int]) -> float:
    """utime + stime of the processes, summed, in seconds."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / _CLOCK_TICKS


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def open_fds(pid: int) -> int:
    return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())


def open_files_limit(pid: int) -> tuple[int, int]:
    """(soft, hard) RLIMIT_NOFILE of a running process, from /proc/<pid>/limits."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise RuntimeError(f"no open-files limit in /proc/{pid}/limits")


def event_loop_of(pid: int) -> str:
    """``uvloop`` when the process has uvloop's extension mapped, else ``asyncio``."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return "uvloop" if "/uvloop/loop." in maps else "asyncio"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while True:
        with socket.socket() as sock:
            if sock.connect_ex((LOOPBACK, port)) == 0:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not listen on {port} within {seconds:.0f} s")
        time.sleep(0.05)


def bench_pki(folder: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all 0600."""
    from skupper.certs.issue import generate_ca, issue_certificate

    ca = generate_ca("bench CA")
    server = issue_certificate(ca, "127.0.0.1", usage="server", hosts=[LOOPBACK])
    client = issue_certificate(ca, "bench client", usage="client")
    for name, data in (("ca.crt", ca.cert_pem), ("server.crt", server.cert_pem),
                       ("server.key", server.key_pem), ("client.crt", client.cert_pem),
                       ("client.key", client.key_pem)):
        (folder / name).write_bytes(data)
        (folder / name).chmod(0o600)


def stunnel_pair(h: Hermetic, stunnel: str, pki: Path, work: Path,
                 ports: dict[str, int]) -> tuple[dict[str, int], dict[str, int]]:
    """Two stunnel processes (client side, server side; mutual TLS 1.3 with ``pki``'s
    certificates) in front of the ``sink`` and ``echo`` ports: (their ports, their pids)."""
    front = {name: free_port() for name in ("sink", "echo")}
    middle = {name: free_port() for name in ("sink", "echo")}
    # TCP_NODELAY on both sides, as the daemons (asyncio) and the load generator set it.
    common = ("foreground = yes\npid =\ndebug = 3\nsslVersionMin = TLSv1.3\n"
              f"CAfile = {pki / 'ca.crt'}\nverifyChain = yes\n"
              "socket = l:TCP_NODELAY=1\nsocket = r:TCP_NODELAY=1\n")
    client = common + f"client = yes\ncert = {pki / 'client.crt'}\nkey = {pki / 'client.key'}\n"
    server = common + f"cert = {pki / 'server.crt'}\nkey = {pki / 'server.key'}\n"
    for name in front:
        client += f"[{name}]\naccept = {LOOPBACK}:{front[name]}\n" \
                  f"connect = {LOOPBACK}:{middle[name]}\n"
        server += f"[{name}]\naccept = {LOOPBACK}:{middle[name]}\n" \
                  f"connect = {LOOPBACK}:{ports[name]}\n"
    pids: dict[str, int] = {}
    for side, text in (("client", client), ("server", server)):
        conf = work / f"stunnel-{side}.conf"
        conf.write_text(text)
        with (work / f"stunnel-{side}.log").open("wb") as log:
            pids[f"stunnel-{side}"] = h.spawn([stunnel, str(conf)],
                                              stdout=subprocess.DEVNULL, stderr=log).pid
    for port in (*front.values(), *middle.values()):
        wait_listening(port, 10.0, f"stunnel (see {work})")
    return front, pids


def link(h: Hermetic, work: Path, issuer: str, redeemer: str) -> None:
    token = work / f"{issuer}-{redeemer}.yaml"
    h.skupper("access-token", "issue", str(token), "-n", issuer)
    h.skupper("access-token", "redeem", str(token), "-n", redeemer)


def expose(h: Hermetic, key: str, target_port: int, at: str, listen_at: str) -> int:
    """A connector for 127.0.0.1:target_port at ``at``, a listener for it at ``listen_at``;
    returns the listener's port once a connector is reachable from it."""
    h.skupper("connector", "create", key, str(target_port), "-n", at)
    port = free_port()
    h.skupper("listener", "create", key, str(port), "--host", LOOPBACK, "-n", listen_at,
              "--wait", "ready", "--timeout", "30s")
    return port


def linked_sites(h: Hermetic, work: Path, ports: dict[str, int],
                 prefix: str = "") -> dict[str, tuple[dict[str, int], tuple[str, ...]]]:
    """Sites a, b, c (names with ``prefix``) linked a - b - c, listeners at a for
    connectors at b ("1 link") and at c ("2 links"): label -> (ports, sites on the way)."""
    a, b, c = (prefix + name for name in "abc")
    h.skupper("site", "create", a, "-n", a, "--enable-link-access")
    h.skupper("site", "create", b, "-n", b, "--enable-link-access")
    h.skupper("site", "create", c, "-n", c)
    link(h, work, a, b)
    link(h, work, b, c)
    made: dict[str, tuple[dict[str, int], tuple[str, ...]]] = {}
    for label, far, sites in (("1 link", b, (a, b)), ("2 links", c, (a, b, c))):
        made[label] = ({service: expose(h, f"{service}-{far}", ports[service], far, a)
                        for service in ("sink", "echo")}, sites)
    return made


# Loaded by the uncounted sites' daemons (PYTHONPATH): TcpSide without its byte counters.
_UNCOUNTED = '''
from skupper.router import bridge


def data_received(self, data):
    if not self.peer_ready:
        self._early.append(data)
        return
    if not self.peer.deliver(data) and self.transport is not None:
        self.transport.pause_reading()


def deliver(self, data):
    if self.dead or self.transport is None:
        return True
    self.transport.write(data)
    return not self._write_paused


bridge.TcpSide.data_received = data_received
bridge.TcpSide.deliver = deliver
'''


def uncounted_pair(h: Hermetic, work: Path, ports: dict[str, int], first: str, second: str,
                   *, counting: bool) -> dict[str, int]:
    """Sites first -> second alone (one link, one listener and connector per service),
    their daemons with or without the bridge's byte counting: two such pairs differ in
    nothing else. Written against the bridge's TcpSide of issue 13; a reworked bridge
    needs this patch redone."""
    saved = dict(h.env)
    if not counting:
        patch = work / "uncounted"
        patch.mkdir(mode=0o700, exist_ok=True)
        (patch / "sitecustomize.py").write_text(_UNCOUNTED)
        h.env["PYTHONPATH"] = str(patch)
    try:
        h.skupper("site", "create", first, "-n", first, "--enable-link-access")
        h.skupper("site", "create", second, "-n", second)
        link(h, work, first, second)
        return {service: expose(h, f"{service}-{second}", ports[service], second, first)
                for service in ("sink", "echo")}
    finally:
        h.env.clear()
        h.env.update(saved)
