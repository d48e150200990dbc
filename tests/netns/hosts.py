"""Test hosts made of network namespaces: separate machines, a WAN router, faults on demand.

``Network`` builds a router namespace (the WAN) and one namespace per host, each joined
to the router by a veth pair whose ends are created directly inside the namespaces, so
no test interface or address ever exists in the machine's own namespace. Host n has its
own loopback up, the address 10.231.<4*subnet+n>.2/24 and a default route via the
router's 10.231.<4*subnet+n>.1. Everything the tests run at a host (daemons, the skupper
CLI, clients, servers) runs through ``ip netns exec``; nothing is sent to those
addresses from the machine's own namespace.

Faults are iptables rules in the router's FORWARD chain, on a host's access line:
``partition`` drops everything to and from the host (silently: no reset, no error at
either end, as a cut WAN; a DROP in the host's own OUTPUT chain would instead fail its
sends with EPERM), ``shape`` queues the host's packets both ways to ``nfq_wire.py``,
which holds (delay) or drops (loss) them. Queuing in the router, not in the sending
host, matters: a packet held in the sender's own stack still counts against its
socket (TCP small queues), which throttles the sender to a couple of packets per delay;
a packet that crossed a veth into the router is no longer charged to it, as with a real
wire. ``close`` removes every process and namespace this network made, by pid and name;
it runs from a finalizer, so also when a test fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests_support import stop_pid

HERE = Path(__file__).resolve().parent
WIRE_TOOL = HERE / "nfq_wire.py"
PEER_TOOL = HERE / "peer.py"
SUBNET_BASE = "10.231"
# The queue number inside each host's namespace (queues are per namespace).
QUEUE = 7


def tools_missing() -> str | None:
    """Why these tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "network namespace tests need root (ip netns, iptables)"
    for tool in ("ip", "ss", "sysctl", iptables()):
        if shutil.which(tool) is None:
            return f"network namespace tests need `{tool}` (scripts/install-netns-tools.sh)"
    probe = f"skprobe{os.getpid()}"
    try:
        run("ip", "netns", "add", probe)
        try:
            run("ip", "netns", "exec", probe, iptables(), "-A", "INPUT", "-j", "ACCEPT")
        finally:
            subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    except AssertionError as exc:
        return f"network namespaces or iptables do not work here: {exc}"
    return None


def iptables() -> str:
    """``iptables`` (Debian's nft backend) works in namespaces here; legacy as a fallback."""
    return os.environ.get("SKUPPER_TEST_IPTABLES") or "iptables"


def run(*argv: str, timeout: float = 30) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                          check=False)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {done.returncode}: "
                             f"{done.stderr.strip()}")
    return done.stdout


@dataclass
class Host:
    name: str  # the namespace
    address: str
    number: int
    port: str  # the router's interface towards this host
    network: Network
    wire_pid: int | None = None
    partitioned: bool = False

    def exec_argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, *argv: str, timeout: float = 30) -> str:
        return run(*self.exec_argv(*argv), timeout=timeout)

    def start(self, *argv: str, env: dict[str, str] | None = None,
              log: Path | None = None) -> subprocess.Popen[bytes]:
        """A long-running process in this host, stopped by pid when the network closes."""
        return self.network.start(self.exec_argv(*argv), env=env, log=log)

    def peer(self, *args: str, timeout: float = 120) -> str:
        """Run tests/netns/peer.py in this host (a client: bounded by ``timeout``)."""
        done = subprocess.run(self.exec_argv(sys.executable, str(PEER_TOOL), *args),
                              capture_output=True, text=True, timeout=timeout,
                              env=self.network.peer_env(), check=False)
        if done.returncode != 0:
            raise AssertionError(f"peer {' '.join(args)} at {self.name} exited "
                                 f"{done.returncode}: {done.stderr.strip()[-2000:]}")
        return done.stdout.strip()

    def serve(self, *args: str, log: Path | None = None) -> subprocess.Popen[bytes]:
        """tests/netns/peer.py as a background process (a server, or a client whose
        output goes to ``log``), stopped by pid when the network closes."""
        return self.start(sys.executable, str(PEER_TOOL), *args, env=self.network.peer_env(),
                          log=log)

    # -- faults, made in the router ---------------------------------------------------

    def _line_rules(self, action: str, *target: str) -> None:
        router = self.network.router
        for flag in ("-i", "-o"):
            run("ip", "netns", "exec", router, iptables(), action, "FORWARD", flag, self.port,
                *target)

    def partition(self) -> None:
        """Drop every packet to and from this host: no answer, no reset."""
        self._line_rules("-I", "-j", "DROP")
        self.partitioned = True

    def heal(self) -> None:
        self._line_rules("-D", "-j", "DROP")
        self.partitioned = False

    def shape(self, delay_ms: float, loss: float, seconds: float, seed: int = 1) -> None:
        """Hold this host's packets ``delay_ms`` each way (and drop ``loss`` of them),
        for at most ``seconds``; the round trip to any other host grows by 2 x delay."""
        self.unshape()
        workdir = self.network.workdir
        ready = workdir / f"{self.name}.wire-ready"
        ready.unlink(missing_ok=True)
        log = workdir / f"{self.name}.wire.log"
        argv = [sys.executable, str(WIRE_TOOL), "--queue", str(self.number),
                "--delay-ms", str(delay_ms), "--loss", str(loss), "--seconds", str(seconds),
                "--seed", str(seed), "--ready", str(ready),
                "--stats", str(workdir / f"{self.name}.wire.json")]
        process = self.network.start(["ip", "netns", "exec", self.network.router, *argv],
                                     log=log)
        deadline = time.monotonic() + 10
        while not ready.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the wire tool did not start for {self.name}: "
                                     + log.read_text()[-2000:])
            time.sleep(0.02)
        self.wire_pid = process.pid
        # --queue-bypass: once the tool is gone, packets pass instead of being dropped.
        self._line_rules("-A", "-j", "NFQUEUE", "--queue-num", str(self.number),
                         "--queue-bypass")

    def unshape(self) -> None:
        if self.wire_pid is None:
            return
        with contextlib.suppress(AssertionError):
            self._line_rules("-D", "-j", "NFQUEUE", "--queue-num", str(self.number),
                             "--queue-bypass")
        self.network.stop_pid(self.wire_pid)
        self.wire_pid = None


@dataclass
class Network:
    """Hosts behind one router, removed by ``close`` (call it from a finalizer)."""

    workdir: Path
    subnet: int  # 0..63: which 10.231.x.0/24 blocks the hosts use
    prefix: str = field(default_factory=lambda: f"sk{os.getpid() % 100000}")
    hosts: dict[str, Host] = field(default_factory=dict)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.router = f"{self.prefix}r{self.subnet}"
        self._add_namespace(self.router)
        run("ip", "netns", "exec", self.router, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")

    def _add_namespace(self, name: str) -> None:
        run("ip", "netns", "add", name)
        self.namespaces.append(name)
        run("ip", "-n", name, "link", "set", "lo", "up")

    def add_host(self, label: str) -> Host:
        number = len(self.hosts) + 1
        if number > 3:
            raise ValueError("at most three hosts per network")
        name = f"{self.prefix}{label}{self.subnet}"
        self._add_namespace(name)
        block = f"{SUBNET_BASE}.{self.subnet * 4 + number}"
        port = f"p{number}"
        # Both ends are made inside the namespaces: nothing appears in the root one.
        run("ip", "-n", self.router, "link", "add", port, "type", "veth",
            "peer", "name", "wire0", "netns", name)
        run("ip", "-n", self.router, "addr", "add", f"{block}.1/24", "dev", port)
        run("ip", "-n", self.router, "link", "set", port, "up")
        run("ip", "-n", name, "addr", "add", f"{block}.2/24", "dev", "wire0")
        run("ip", "-n", name, "link", "set", "wire0", "up")
        run("ip", "-n", name, "route", "add", "default", "via", f"{block}.1")
        host = Host(name=name, address=f"{block}.2", number=number, port=port, network=self)
        self.hosts[label] = host
        return host

    def addresses(self) -> list[str]:
        return [host.address for host in self.hosts.values()]

    def peer_env(self) -> dict[str, str]:
        return {**os.environ, "SKUPPER_TEST_HOSTS": ",".join(self.addresses())}

    def start(self, argv: list[str], env: dict[str, str] | None = None,
              log: Path | None = None) -> subprocess.Popen[bytes]:
        out = open(log, "ab") if log else None  # noqa: SIM115 - handed to the child
        try:
            process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                       stdout=out or subprocess.DEVNULL,
                                       stderr=subprocess.STDOUT if out else subprocess.DEVNULL)
        finally:
            if out:
                out.close()
        self.processes.append(process)
        return process

    def stop_pid(self, pid: int) -> None:
        stop_pid(pid)
        for process in self.processes:
            if process.pid == pid:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=5)

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                self.stop_pid(process.pid)
        for name in reversed(self.namespaces):
            # Deleting a namespace removes its interfaces, addresses and rules with it.
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        self.namespaces.clear()
