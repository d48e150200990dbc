"""Shared helpers for the benchmarks: hermetic data homes, timing, cleanup, reporting.

Everything here is standard library only, so importing it costs the timed figures
nothing. The benchmarks run on loopback (127.0.0.1) only and stop every daemon they
started, by the pid in ``<XDG_DATA_HOME>/skupper/namespaces/<ns>/runtime/daemon.pid``,
whatever happens.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"
REPO = Path(__file__).resolve().parents[1]
# The project's venv (never recreated here); else the venv of whoever runs the bench.
VENV_BIN = (
    REPO / ".venv" / "bin"
    if (REPO / ".venv" / "bin" / "skupper").exists()
    else Path(sys.executable).parent
)
PYTHON = str(VENV_BIN / "python")
SKUPPER = str(VENV_BIN / "skupper")

# How long a daemon gets to stop after SIGTERM before it gets SIGKILL.
STOP_GRACE_SECONDS = 5.0


# --- the hermetic environment ----------------------------------------------------------


def hermetic_env(home: Path) -> dict[str, str]:
    """The environment every skupper command (and its daemon) runs with: ``home`` only."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("SKUPPER_", "KUBE", "XDG_"))
    }
    env.update(
        HOME=str(home),
        XDG_DATA_HOME=str(home),
        SKUPPER_PLATFORM="systemd",
        SKUPPER_SERVICE_MANAGER="process",
        SKUPPER_LINK_ACCESS_HOST=LOOPBACK,
    )
    # Cold start is measured as a user sees it: bytecode caches used, no import tracing.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    return env


def namespaces_dir(home: Path) -> Path:
    return home / "skupper" / "namespaces"


def _is_skupper_daemon(pid: int) -> bool:
    """Guard against pid reuse: only signal a process whose command line is our daemon."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"skupper.daemon" in cmdline


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not reaped yet) counts as gone.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return False
    return True


def daemon_pids(home: Path) -> dict[str, int]:
    """namespace -> pid of every daemon whose pid file exists under ``home``."""
    found: dict[str, int] = {}
    root = namespaces_dir(home)
    if not root.is_dir():
        return found
    for ns_dir in sorted(root.iterdir()):
        with contextlib.suppress(OSError, ValueError):
            found[ns_dir.name] = int((ns_dir / "runtime" / "daemon.pid").read_text().strip())
    return found


def stop_pid(pid: int, grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM, wait up to ``grace``, then SIGKILL. Never signals anything but ``pid``."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.02)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.02)


@dataclass
class Hermetic:
    """A temp data home; remembers every daemon seen in it and stops them all on exit."""

    home: Path
    env: dict[str, str]
    seen: dict[int, str] = field(default_factory=dict)  # pid -> namespace
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def remember_daemons(self) -> dict[str, int]:
        pids = daemon_pids(self.home)
        for ns, pid in pids.items():
            if pid > 0 and _is_skupper_daemon(pid):
                self.seen[pid] = ns
        return pids

    def daemon_pid(self, namespace: str = "default") -> int:
        pid = self.remember_daemons().get(namespace)
        if pid is None:
            raise RuntimeError(f"no daemon pid file for namespace {namespace} in {self.home}")
        return pid

    def skupper(
        self, *args: str, timeout: float = 60.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [SKUPPER, *args], env=self.env, capture_output=True, text=True,
            timeout=timeout, check=False, stdin=subprocess.DEVNULL,
        )
        # Record daemons as soon as any command may have started one.
        self.remember_daemons()
        if check and done.returncode != 0:
            raise RuntimeError(
                f"skupper {' '.join(args)} exited {done.returncode}\n"
                f"stdout: {done.stdout}\nstderr: {done.stderr}"
            )
        return done

    def spawn(self, argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """A child process this bench owns; it is stopped (by pid) on exit."""
        child: subprocess.Popen[bytes] = subprocess.Popen(  # type: ignore[call-overload]
            list(argv), env=self.env, **kwargs
        )
        self.children.append(child)
        return child

    def cleanup(self) -> None:
        for child in self.children:
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.terminate()
                try:
                    child.wait(timeout=STOP_GRACE_SECONDS)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait(timeout=STOP_GRACE_SECONDS)
        self.remember_daemons()
        for pid, ns in self.seen.items():
            if _is_skupper_daemon(pid):
                stop_pid(pid)
                print(f"stopped daemon pid {pid} (namespace {ns})", file=sys.stderr)
        leftover = [pid for pid in self.seen if _alive(pid)]
        if leftover:
            print(f"warning: daemons still alive after cleanup: {leftover}", file=sys.stderr)


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: unwind so every ``finally`` (and cleanup) runs."""


def _raise_terminated(signum: int, _frame: object) -> None:
    raise Terminated(f"signal {signum}")


@contextlib.contextmanager
def hermetic(prefix: str = "skupper-bench-", keep: bool = False) -> Iterator[Hermetic]:
    """A temp data home whose daemons are stopped on exit, even on error or SIGTERM."""
    previous = {
        sig: signal.signal(sig, _raise_terminated) for sig in (signal.SIGTERM, signal.SIGHUP)
    }
    home = Path(tempfile.mkdtemp(prefix=prefix))
    h = Hermetic(home=home, env=hermetic_env(home))
    try:
        yield h
    finally:
        try:
            h.cleanup()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if not keep:
                shutil.rmtree(home, ignore_errors=True)


# --- timing ----------------------------------------------------------------------------


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def p90(samples: Sequence[float]) -> float:
    """Nearest-rank 90th percentile."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def time_once(argv: Sequence[str], env: dict[str, str], timeout: float = 60.0) -> float:
    """Wall time of one run of ``argv``, in seconds; raises if it fails."""
    start = time.perf_counter()
    done = subprocess.run(
        list(argv), env=env, stdin=subprocess.DEVNULL, capture_output=True,
        timeout=timeout, check=False,
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode(errors='replace')}"
        )
    return elapsed


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


# --- reporting -------------------------------------------------------------------------


@dataclass
class Row:
    figure: str
    measured: str
    baseline: str
    ratio: str
    target: str
    met: bool | None  # None: could not be measured

    def cells(self) -> list[str]:
        met = "n/a" if self.met is None else ("yes" if self.met else "**no**")
        return [self.figure, self.measured, self.baseline, self.ratio, self.target, met]


def markdown_table(rows: Sequence[Row]) -> str:
    header = ["figure", "measured", "baseline (same run)", "ratio", "target", "met?"]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def machine_info() -> list[str]:
    import ssl

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count() or 0
    openssl_cli = "not installed"
    if shutil.which("openssl"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            openssl_cli = subprocess.run(
                ["openssl", "version"], capture_output=True, text=True, timeout=5, check=False
            ).stdout.strip()
    crypto = "?"
    with contextlib.suppress(Exception):
        import cryptography
        from cryptography.hazmat.backends.openssl.backend import backend

        crypto = f"{cryptography.__version__} ({backend.openssl_version_text()})"
    aiohttp_v = "?"
    with contextlib.suppress(Exception):
        import aiohttp

        aiohttp_v = aiohttp.__version__
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"- nproc: {affinity} (os.cpu_count {os.cpu_count()}), load average {load}",
        f"- python: {platform.python_version()} ({sys.executable})",
        f"- python ssl: {ssl.OPENSSL_VERSION}",
        f"- openssl CLI: {openssl_cli}",
        f"- cryptography: {crypto}; aiohttp: {aiohttp_v}",
        f"- platform: {platform.platform()}",
    ]
