"""The docker and podman platforms: the local platform's state, its daemon in a container.

A namespace keeps the same folder, SQLite store and file secrets as on the local
platform (``platforms.local``); only the site daemon runs elsewhere: in a container
named ``skupper-<namespace>`` that bind-mounts that one folder at the same path, runs
as the CLI's uid:gid (files keep their owner and modes), with host networking (link
ports, listeners and connectors behave as on the local platform), a read-only root,
no capabilities, no new privileges, and the restart policy ``unless-stopped``.

What runs, stops or crashed is always asked of the engine: the pid file the daemon
writes inside the container names a process in another pid namespace (often 1), so it
is never read here, let alone signalled.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from skupper import __version__
from skupper.base.errors import SkupperError
from skupper.base.files import ensure_private_dir
from skupper.base.text import printable
from skupper.platforms.engine import Engine
from skupper.platforms.local import data_home
from skupper.platforms.local_platform import LocalPlatform
from skupper.platforms.select import record_platform

if TYPE_CHECKING:
    from skupper.store.sqlite import SqliteStore

MANAGED_BY = "app.kubernetes.io/managed-by"
NAMESPACE_LABEL = "skupper.io/namespace"
STATE_LABEL = "skupper.io/state"
IMAGE_REPOSITORY = "skupper-py"
# docker stop sends TERM, then KILL after this; the daemon stops in well under it.
STOP_TIMEOUT_SECONDS = 10
# Passed into the container when set: what the daemon reads from its environment.
_PASSED_ENV = ("SKUPPER_LINK_ACCESS_HOST", "SKUPPER_BIND_HOST", "SKUPPER_LOG_LEVEL",
               "SKUPPER_METRICS_HOST")


def image_tag() -> str:
    return f"{IMAGE_REPOSITORY}:{__version__}"


def container_name(namespace: str) -> str:
    return f"skupper-{namespace}"


def _install_hint(kind: str) -> str:
    return f'Build it with "skupper system install --platform {kind}".'


class ContainerPlatform(LocalPlatform):
    """``--platform docker`` or ``--platform podman``."""

    def __init__(self, namespace: str, kind: str) -> None:
        super().__init__(namespace)
        self.name = kind
        self.engine = Engine(kind)
        self.container = container_name(namespace)

    # --- state: the local platform's, remembered as this platform's -------------------

    def open_store(self) -> SqliteStore:
        if not self.has_state():
            # Only site create opens a namespace without state: refuse before writing
            # anything if the site could not run here.
            self.engine.reachable()
            self._ours(self.engine.inspect("container", self.container))
            self.require_image()
        ensure_private_dir(self.paths.root)
        record_platform(self.paths.root, self.name)
        return super().open_store()

    def require_image(self) -> dict[str, Any]:
        image = self.engine.inspect("image", image_tag())
        if image is None:
            raise SkupperError(f"The site image {image_tag()} is not installed",
                               f"the {self.name} engine ({self.engine.where}) has no such image",
                               _install_hint(self.name))
        return image

    # --- the container ----------------------------------------------------------------

    def _ours(self, info: dict[str, Any] | None) -> dict[str, Any] | None:
        """``info`` if it is this namespace's container; an error if the name is taken."""
        if info is None:
            return None
        labels = (info.get("Config") or {}).get("Labels") or {}
        if (labels.get(MANAGED_BY) != "skupper" or labels.get(NAMESPACE_LABEL) != self.namespace
                or labels.get(STATE_LABEL) != str(self.paths.root)):
            owner = ("another skupper data home (" + printable(labels.get(STATE_LABEL)) + ")"
                     if labels.get(MANAGED_BY) == "skupper" else "something other than skupper")
            raise SkupperError(
                f'A container named "{self.container}" exists and is not this site\'s',
                f"it belongs to {owner}",
                f'Remove or rename it ("{self.name} rm -f {self.container}"), or use '
                "another namespace.",
            )
        return info

    def state(self) -> dict[str, Any] | None:
        """The engine's State of this namespace's container, or None without one."""
        info = self._ours(self.engine.inspect("container", self.container))
        if info is None:
            return None
        state: dict[str, Any] = dict(info.get("State") or {})
        state["Id"] = str(info.get("Id") or "")[:12]
        state["RestartCount"] = info.get("RestartCount", 0)
        state["ImageId"] = info.get("Image")
        return state

    def running(self) -> bool:
        state = self.state()
        return bool(state and (state.get("Running") or state.get("Restarting")))

    def start(self) -> None:
        image = self.require_image()
        state = self.state()
        if state is not None and state.get("ImageId") not in (image.get("Id"), None):
            # Made from an older image (skupper upgraded and installed again): make it anew.
            self._remove_container()
            state = None
        if state is None:
            self._create_container()
        elif not state.get("Running"):
            self.engine.check(["start", self.container],
                              f"Cannot start the container {self.container}",
                              hint=f'See "{self.name} logs {self.container}".')

    def _create_container(self) -> None:
        ensure_private_dir(self.paths.logs)
        ensure_private_dir(self.paths.runtime)
        root = str(self.paths.root)
        args = [
            "run", "--detach", "--name", self.container,
            "--label", f"{MANAGED_BY}=skupper",
            "--label", f"{NAMESPACE_LABEL}={self.namespace}",
            "--label", f"{STATE_LABEL}={root}",
            "--restart", "unless-stopped",
            "--network", "host",
            "--user", f"{os.getuid()}:{os.getgid()}",
            "--read-only", "--tmpfs", "/tmp:rw,nosuid,nodev,noexec,size=16m",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--stop-timeout", str(STOP_TIMEOUT_SECONDS),
            "--volume", f"{root}:{root}:rw",
            "--env", f"XDG_DATA_HOME={data_home().parent}",
            "--env", "PYTHONUNBUFFERED=1",
            # What the site tells the network it runs on (network status, site info).
            "--env", f"SKUPPER_SITE_PLATFORM={self.name}",
        ]
        if self.name == "podman" and os.getuid() != 0:
            args += ["--userns", "keep-id"]  # rootless: the same uid inside as outside
        for key in _PASSED_ENV:
            if key in os.environ:
                args += ["--env", f"{key}={os.environ[key]}"]
        args += [image_tag(), "--namespace", self.namespace]
        self.engine.check(args, f"Cannot start the site container {self.container}",
                          hint=f'See "{self.name} logs {self.container}".')

    def _remove_container(self) -> None:
        self.engine.check(["rm", "--force", self.container],
                          f"Cannot remove the container {self.container}")

    def stop(self, *, remove_unit: bool = False) -> bool:
        """Stop the container (``remove_unit``: and remove it); True if it was running."""
        state = self.state()
        if state is None:
            return False
        was_running = bool(state.get("Running") or state.get("Restarting"))
        if was_running:
            self.engine.check(["stop", "--time", str(STOP_TIMEOUT_SECONDS), self.container],
                              f"Cannot stop the container {self.container}",
                              timeout=STOP_TIMEOUT_SECONDS + 30)
        if remove_unit:
            self._remove_container()
        return was_running

    def remove_state(self) -> None:
        if self.state() is not None:  # never delete a folder a container still mounts
            self._remove_container()
        super().remove_state()

    # --- words for the CLI ------------------------------------------------------------

    @property
    def log_file(self) -> str:
        return f"{self.name} logs {self.container}"

    @property
    def stopped_message(self) -> str:
        return f"the site container {self.container} is not running"

