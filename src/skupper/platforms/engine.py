"""A container engine (docker or podman) through its own command-line client.

The client is the one the user already has and configured: it honours ``DOCKER_HOST``,
contexts, ``CONTAINERS_CONF`` and rootless podman without this package knowing about
them, and needs no SDK. Every failure becomes one line saying what to do; the engine's
own words are passed through ``printable`` (they may quote names from anywhere).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

from skupper.base.errors import SkupperError
from skupper.base.text import printable
from skupper.platforms.select import ENGINES

# Inspecting or stopping answers within this; building an image takes longer.
COMMAND_TIMEOUT_SECONDS = 60.0
BUILD_TIMEOUT_SECONDS = 900.0
# The most of the engine's message one error line quotes.
_QUOTE_LIMIT = 300

_UNREACHABLE = (
    "cannot connect to the docker daemon",
    "is the docker daemon running",
    "error during connect",
    "connection refused",
    "no such file or directory",
    "unable to connect to podman",
)
_NOT_FOUND = ("no such", "not found", "not known")
_NOT_PERMITTED = ("permission denied", "got permission denied", "access denied")
_INSTALL_HINT = {
    "docker": "Install Docker (on Debian: apt-get install docker.io) and start it, "
              "or choose another --platform.",
    "podman": "Install Podman (on Debian: apt-get install podman), or choose another "
              "--platform.",
}


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return printable(lines[-1] if lines else "no output", limit=_QUOTE_LIMIT)


class Engine:
    """One engine's client: ``run`` a subcommand, ``inspect`` objects, map failures."""

    def __init__(self, kind: str) -> None:
        if kind not in ENGINES:
            raise ValueError(kind)
        self.kind = kind

    @property
    def where(self) -> str:
        """Which engine the client talks to, in words (for error lines)."""
        if self.kind == "docker":
            host = os.environ.get("DOCKER_HOST")
            return f"DOCKER_HOST={printable(host)}" if host else "unix:///var/run/docker.sock"
        url = os.environ.get("CONTAINER_HOST")
        return f"CONTAINER_HOST={printable(url)}" if url else "local podman"

    def binary(self) -> str:
        found = shutil.which(self.kind)
        if found is None:
            raise SkupperError(f"The {self.kind} engine is not installed",
                               f"there is no {self.kind} command on PATH",
                               _INSTALL_HINT[self.kind])
        return found

    def run(self, args: Sequence[str], *, timeout: float = COMMAND_TIMEOUT_SECONDS,
            env: dict[str, str] | None = None, what: str | None = None,
            ) -> subprocess.CompletedProcess[str]:
        """Run ``<engine> args``; a failure to reach the engine raises, others return."""
        argv = [self.binary(), *args]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                  env=None if env is None else {**os.environ, **env},
                                  stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired:
            raise SkupperError(f"{what or self.kind + ' ' + args[0]} did not finish",
                               f"the {self.kind} engine ({self.where}) did not answer within "
                               f"{timeout:g} s",
                               f"Check that the engine is healthy ({self.kind} info).") from None
        except OSError as exc:
            raise SkupperError(f"Cannot run {self.kind}", printable(str(exc)),
                               _INSTALL_HINT[self.kind]) from None
        if done.returncode != 0:
            self._raise_if_unreachable(done.stderr)
        return done

    def check(self, args: Sequence[str], what: str, *, hint: str = "",
              timeout: float = COMMAND_TIMEOUT_SECONDS,
              env: dict[str, str] | None = None) -> str:
        """Run and require success: the engine's last line of complaint becomes the why."""
        done = self.run(args, timeout=timeout, env=env, what=what)
        if done.returncode != 0:
            raise SkupperError(what, last_line(done.stderr or done.stdout), hint)
        return done.stdout

    def _raise_if_unreachable(self, stderr: str) -> None:
        lowered = stderr.lower()
        socket_words = ("docker.sock", "podman.sock", "socket", "daemon")
        if any(word in lowered for word in _NOT_PERMITTED) and any(
                word in lowered for word in socket_words):
            raise SkupperError(
                f"Cannot use the {self.kind} engine",
                f"permission denied on its socket ({self.where})",
                f"Run as a user allowed to use {self.kind} (e.g. in the {self.kind} group), "
                "or point DOCKER_HOST at a socket you may use." if self.kind == "docker" else
                "Run as a user allowed to use podman.",
            )
        if any(word in lowered for word in _UNREACHABLE) and any(
                word in lowered for word in (*socket_words, "connect")):
            raise SkupperError(
                f"The {self.kind} engine is not running",
                f"nothing answers at {self.where} ({last_line(stderr)})",
                f"Start it (e.g. systemctl start {self.kind}), or point DOCKER_HOST at a "
                "running engine." if self.kind == "docker" else
                "Start it, or unset CONTAINER_HOST to use the local podman.",
            )

    def inspect(self, kind: str, name: str) -> dict[str, Any] | None:
        """The engine's JSON for one container or image, or None when there is none."""
        done = self.run(["inspect", "--type", kind, name])
        if done.returncode != 0:
            if any(words in done.stderr.lower() for words in _NOT_FOUND):
                return None
            raise SkupperError(f"Cannot inspect the {kind} {name}",
                               last_line(done.stderr), f"Check the {self.kind} engine.")
        try:
            found = json.loads(done.stdout)
        except ValueError:
            raise SkupperError(f"Cannot inspect the {kind} {name}",
                               f"{self.kind} printed something that is not JSON") from None
        if not isinstance(found, list) or not found or not isinstance(found[0], dict):
            return None
        first: dict[str, Any] = found[0]
        return first

    def reachable(self) -> None:
        """Raise the one-line error when the engine cannot be used at all."""
        done = self.run(["version", "--format", "{{json .}}"], what=f"{self.kind} version")
        if done.returncode != 0:
            raise SkupperError(f"The {self.kind} engine does not answer",
                               last_line(done.stderr), f"Check it with \"{self.kind} info\".")
