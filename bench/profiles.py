"""Profiles of running processes for the benches: py-spy and perf, and what they say.

    python bench/profiles.py fold FILE.pyspy.txt [--top 20]   # self time by function
    python bench/profiles.py perf FILE.perf.data [--top 20]   # user/kernel split, symbols

``Profiler`` attaches to pids while a load runs (py-spy ``record --nonblocking --format
raw``, collapsed Python stacks; ``perf record -g -e cpu-clock``), and stops them by their
own pids. py-spy drops samples of threads waiting for events (idle), so its percentages
are of the busy time, each charged to the innermost Python function (with the C code it
called); perf samples CPU time wherever it is spent, kernel included, which gives the
syscall share and the native libraries' (libcrypto is TLS).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

PY_SPY = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
PERF = shutil.which("perf")
PY_SPY_RATE = 250
PERF_FREQUENCY = 499
STOP_SECONDS = 30.0

_LINE_NUMBER = re.compile(r":\d+\)$")
_NATIVE_ADDRESS = re.compile(r"^0x[0-9a-f]+ \((.+)\)$")


class Profiler:
    """py-spy and perf (those installed) on some pids, from start() to stop()."""

    def __init__(self, folder: Path, tools: tuple[str, ...] = ("py-spy", "perf")) -> None:
        self.folder = folder
        self.tools = tuple(t for t in tools if (PY_SPY if t == "py-spy" else PERF))
        self._running: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, label: str, pids: dict[str, int]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for name, pid in pids.items():
            stem = self.folder / f"{label}-{name}"
            if "py-spy" in self.tools:
                out = stem.with_suffix(".pyspy.txt")
                # --nonblocking: the daemon is never paused (--native would pause it at
                # every sample and slow the load); perf gives the native and kernel side.
                argv = [str(PY_SPY), "record", "-p", str(pid), "--nonblocking", "--format",
                        "raw", "--rate", str(PY_SPY_RATE), "-o", str(out)]
                self._spawn(argv, stem.with_suffix(".pyspy.log"), out)
            if "perf" in self.tools:
                out = stem.with_suffix(".perf.data")
                argv = [str(PERF), "record", "-g", "-e", "cpu-clock", "-F",
                        str(PERF_FREQUENCY), "-p", str(pid), "-o", str(out)]
                self._spawn(argv, stem.with_suffix(".perf.log"), out)

    def _spawn(self, argv: list[str], log: Path, out: Path) -> None:
        with log.open("wb") as sink:
            child = subprocess.Popen(argv, stdout=sink, stderr=sink, stdin=subprocess.DEVNULL)
        self._running.append((child, out))

    def stop(self) -> list[Path]:
        """SIGINT (both write their output on it), then wait; returns the files written."""
        written = []
        for child, _out in self._running:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGINT)
        for child, out in self._running:
            try:
                child.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(STOP_SECONDS)
            if out.exists():
                written.append(out)
        self._running.clear()
        return written

    def summarise(self, files: list[Path], top: int = 15) -> None:
        """Next to each X.pyspy.txt an X.pyspy-top.txt; next to X.perf.data, X.perf-top.txt."""
        for path in files:
            stem, kind = path.name.split(".")[:2]
            text = fold_text(path, top) if kind == "pyspy" else perf_text(path, top)
            path.with_name(f"{stem}.{kind}-top.txt").write_text(text)


# --- py-spy's collapsed stacks ------------------------------------------------------------


def _function(frame: str) -> str:
    """``name (file:line)`` -> ``name (file)``; a bare native address -> its library."""
    native = _NATIVE_ADDRESS.match(frame)
    if native:
        return f"[{native.group(1)}]"
    return _LINE_NUMBER.sub(")", frame)


def fold(path: Path) -> tuple[int, collections.Counter[str], collections.Counter[str]]:
    """(samples, self samples by function, self samples by file or library)."""
    by_function: collections.Counter[str] = collections.Counter()
    by_file: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        leaf = _function(stack.split(";")[-1])
        by_function[leaf] += int(count)
        file = leaf[leaf.rfind("(") + 1:-1] if leaf.endswith(")") else leaf.strip("[]")
        by_file[file.rsplit("/", 1)[-1]] += int(count)
        total += int(count)
    return total, by_function, by_file


# py-spy without --native judges idleness from the thread's state, racily: part of the
# time spent waiting in epoll_wait still shows as busy samples in the selector's select.
_WAITING = ("EpollSelector.select (selectors.py)",)


def fold_text(path: Path, top: int = 15) -> str:
    total, by_function, by_file = fold(path)
    if total == 0:
        return f"{path.name}: no samples\n"
    waiting = sum(by_function.pop(name, 0) for name in _WAITING)
    work = max(total - waiting, 1)
    lines = [f"{path.name}: {total} samples, {100 * waiting / total:.1f}% in the selector's "
             f"wait; self time of the other {work}, by innermost Python function (the C "
             "code and syscalls it calls included):", ""]
    lines += [f"{100 * n / work:5.1f}%  {name}" for name, n in by_function.most_common(top)]
    lines += ["", "by file or library (selector wait included):"]
    lines += [f"{100 * n / total:5.1f}%  {name}" for name, n in by_file.most_common(top)]
    return "\n".join(lines) + "\n"


# --- perf ----------------------------------------------------------------------------------


def _perf_report(path: Path, sort: str) -> list[tuple[float, str]]:
    done = subprocess.run(
        [str(PERF), "report", "-i", str(path), "--stdio", "--no-children", "-g", "none",
         "--sort", sort, "--percent-limit", "0.3"],
        capture_output=True, text=True, timeout=120, check=False)
    rows = []
    for line in done.stdout.splitlines():
        match = re.match(r"\s*([\d.]+)%\s+(.*)$", line)
        if match:
            rows.append((float(match.group(1)), " ".join(match.group(2).split())))
    return rows


def perf_text(path: Path, top: int = 15) -> str:
    by_dso = _perf_report(path, "dso")
    kernel = sum(pct for pct, name in by_dso if name.startswith("[kernel"))
    lines = [f"{path.name}: kernel {kernel:.1f}% of CPU samples (syscalls, TCP stack, "
             "softirq in this process's context)", "", "by library:"]
    lines += [f"{pct:5.1f}%  {name}" for pct, name in by_dso[:top]]
    lines += ["", "by symbol:"]
    lines += [f"{pct:5.1f}%  {name}" for pct, name in _perf_report(path, "dso,sym")[:top]]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("fold", "perf"))
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    for path in args.files:
        print(fold_text(path, args.top) if args.kind == "fold" else perf_text(path, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
