"""Starting, stopping and finding the site daemon of a namespace on this machine.

The daemon holds an exclusive flock on ``runtime/daemon.lock`` for its whole life, so
"is it running?" is answered by the kernel, never by a stale pid file; a kill -9
releases the lock. Where ``systemctl --user`` works the daemon runs as a user unit
(restarted by systemd on failure); otherwise it runs as a detached process.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from skupper.base.errors import SkupperError
from skupper.base.files import ensure_private_dir
from skupper.platforms.local import NamespacePaths

if TYPE_CHECKING:
    import subprocess

STOP_GRACE_SECONDS = 10.0
_SYSTEMCTL_TIMEOUT = 5.0
# The daemon's exit status when it cannot work at all (a damaged store, no log file):
# sysexits' EX_CONFIG. The unit does not restart on it, so a broken site fails once
# instead of in a loop.
EXIT_UNUSABLE = 78
_LOG_TAIL_BYTES = 64 * 1024
_STARTING = "site daemon starting"


def daemon_pid(paths: NamespacePaths) -> int | None:
    """The running daemon's pid, or None when no daemon holds the namespace's lock."""
    if not paths.lock_file.exists():
        return None
    try:
        fd = os.open(paths.lock_file, os.O_RDWR | os.O_CLOEXEC)
    except OSError as error:
        raise SkupperError(
            f"Cannot tell whether the site daemon runs: {paths.lock_file} cannot be opened",
            error.strerror or str(error),
            "Move it aside (no daemon can run while it is in the way).",
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            return int(paths.pid_file.read_text().strip())
        except (OSError, ValueError):
            return -1  # running, but its pid file is not written yet
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def unit_name(namespace: str) -> str:
    return f"skupper-site-{namespace}.service"


def _unit_dir() -> Path:
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "systemd" / "user"


def systemd_user_available() -> bool:
    import shutil
    import subprocess  # here, not at the top: most commands never start anything

    mode = os.environ.get("SKUPPER_SERVICE_MANAGER", "").lower()
    if mode in ("process", "none"):
        return False
    if shutil.which("systemctl") is None:
        return False
    try:
        done = subprocess.run(
            ["systemctl", "--user", "show-environment"],
            capture_output=True,
            timeout=_SYSTEMCTL_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _daemon_argv(namespace: str) -> list[str]:
    return [sys.executable, "-m", "skupper.daemon", "--namespace", namespace]


def _systemctl(*args: str) -> None:
    import subprocess  # here, not at the top: most commands never start anything

    done = subprocess.run(
        ["systemctl", "--user", *args],
        capture_output=True,
        text=True,
        timeout=_SYSTEMCTL_TIMEOUT * 4,
        check=False,
    )
    if done.returncode != 0:
        raise SkupperError(
            f"systemctl --user {' '.join(args)} failed",
            done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no output",
            "Set SKUPPER_SERVICE_MANAGER=process to run the site without systemd.",
        )


def _write_unit(paths: NamespacePaths) -> None:
    keep = ("XDG_DATA_HOME", "SKUPPER_LINK_ACCESS_HOST", "SKUPPER_BIND_HOST", "PATH")
    env_lines = "".join(
        f'Environment="{key}={os.environ[key]}"\n' for key in keep if key in os.environ
    )
    unit = (
        "[Unit]\n"
        f"Description=Skupper site daemon for namespace {paths.namespace}\n\n"
        "[Service]\n"
        f"ExecStart={' '.join(_daemon_argv(paths.namespace))}\n"
        f"{env_lines}"
        "Restart=on-failure\nRestartSec=1\n"
        f"RestartPreventExitStatus={EXIT_UNUSABLE}\n\n"
        "[Install]\nWantedBy=default.target\n"
    )
    folder = _unit_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / unit_name(paths.namespace)).write_text(unit)


def start_daemon(paths: NamespacePaths) -> subprocess.Popen[bytes] | None:
    """Start the namespace's daemon unless one is running already.

    Returns the process when it was started here as a detached process (not by
    systemd), so the caller can tell at once when it exits.
    """
    import subprocess  # here, not at the top: most commands never start anything

    if daemon_pid(paths) is not None:
        return None
    paths.make_root()
    try:
        ensure_private_dir(paths.logs)
        ensure_private_dir(paths.runtime)
    except OSError as error:
        raise SkupperError(
            f"Cannot prepare the site's folders in {paths.root}",
            error.strerror or str(error),
            'Move the offending file aside, or run "skupper site delete".',
        ) from None
    if systemd_user_available():
        _write_unit(paths)
        _systemctl("daemon-reload")
        _systemctl("enable", "--now", unit_name(paths.namespace))
        return None
    # The daemon writes its own (rotated) log; its stderr only catches what comes before
    # that log is open. Truncated at each start, so it stays as small as one start's
    # output, and 0600 like every other file.
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        out = os.open(paths.stderr_file, flags, 0o600)
    except OSError as error:
        raise SkupperError(
            f"Cannot open {paths.stderr_file}",
            error.strerror or str(error),
            'Move it aside, or run "skupper site delete".',
        ) from None
    try:
        os.fchmod(out, 0o600)
        return subprocess.Popen(
            _daemon_argv(paths.namespace),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            close_fds=True,
        )
    finally:
        os.close(out)


def last_failure(paths: NamespacePaths) -> str | None:
    """Why the daemon's last run ended, in its own words, or None if it said nothing.

    The last error its log holds after its last "starting" line; else (it died before
    its log was open) the last line of its stderr. Escaped: a log line is data.
    """
    from skupper.base.text import printable

    lines = _tail_lines(paths.log_file)
    starts = [i for i, line in enumerate(lines) if _STARTING in line]
    run = lines[starts[-1] + 1:] if starts else lines
    for line in reversed(run):
        head, sep, message = line.partition(": ")
        if sep and (" ERROR " in head or " CRITICAL " in head):
            return printable(message.strip(), 300)
    tail = [line for line in _tail_lines(paths.stderr_file) if line.strip()]
    return printable(tail[-1].strip(), 300) if tail else None


def _tail_lines(path: Path) -> list[str]:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - _LOG_TAIL_BYTES))
            data = handle.read(_LOG_TAIL_BYTES)
    except OSError:
        return []
    return data.decode("utf-8", "replace").splitlines()


def _uses_unit(paths: NamespacePaths) -> bool:
    return (_unit_dir() / unit_name(paths.namespace)).exists() and systemd_user_available()


def stop_daemon(paths: NamespacePaths, *, remove_unit: bool = False) -> bool:
    """Stop the daemon (TERM, then KILL after a grace period); True if one was running."""
    if _uses_unit(paths):
        _systemctl("stop", unit_name(paths.namespace))
        if remove_unit:
            _systemctl("disable", unit_name(paths.namespace))
            with contextlib.suppress(FileNotFoundError):
                (_unit_dir() / unit_name(paths.namespace)).unlink()
            _systemctl("daemon-reload")
    pid = daemon_pid(paths)
    if pid is None:
        return False
    if pid > 0:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while time.monotonic() < deadline:
        if daemon_pid(paths) is None:
            return True
        time.sleep(0.02)
    if pid > 0:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while daemon_pid(paths) is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    return True
