"""Choosing the platform: --platform, else SKUPPER_PLATFORM, else what the namespace or
the machine has; and the platform a local namespace remembers.

``linux`` is upstream Skupper v2's name for the bare-host platform, here ``systemd``.
A namespace's folder (the local, docker and podman platforms share its layout) records
which of them made it in ``<namespace>/platform``; a folder without that file was made
by the local platform. Using it with another platform is refused in one line, since
two platforms would start two daemons over one store.
"""

from __future__ import annotations

import os
from pathlib import Path

from skupper.base.errors import SkupperError
from skupper.base.files import write_private

PLATFORMS = ("kubernetes", "docker", "podman", "systemd", "linux")
ALIASES = {"linux": "systemd"}
# The platforms whose state is a folder on this machine (platforms.local's layout).
FOLDER_PLATFORMS = ("systemd", "docker", "podman")
# The folder platforms whose daemon runs in a container (platforms.container).
ENGINES = ("docker", "podman")
PLATFORM_FILE = "platform"


def kubeconfig_present() -> bool:
    env = os.environ.get("KUBECONFIG")
    if env:
        return any(os.path.isfile(p) for p in env.split(os.pathsep) if p)
    return os.path.isfile(os.path.join(os.path.expanduser("~"), ".kube", "config"))


def in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.isfile(
        "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )


def explicit_platform(flag: str | None) -> str | None:
    """What --platform or SKUPPER_PLATFORM says, if either says anything."""
    if flag:
        return flag
    return os.environ.get("SKUPPER_PLATFORM", "").strip() or None


def choose_platform(flag: str | None) -> str:
    chosen = explicit_platform(flag)
    if chosen:
        return ALIASES.get(chosen, chosen)
    if kubeconfig_present() or in_cluster():
        return "kubernetes"
    return "systemd"


def recorded_platform(root: Path) -> str | None:
    """The platform that made the namespace folder ``root``; None when there is none."""
    marker = root / PLATFORM_FILE
    try:
        text = marker.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):  # no folder yet (or a file in its way:
        # making the folder says so)
        return "systemd" if (root / "store.db").exists() else None
    except OSError as exc:
        raise SkupperError(f"Cannot read {marker}", exc.strerror or str(exc)) from None
    if text not in FOLDER_PLATFORMS:
        raise SkupperError(f"Cannot tell the platform of the namespace at {root}",
                           f"{marker} names no known platform",
                           f"Write one of {', '.join(FOLDER_PLATFORMS)} into it.")
    return text


def record_platform(root: Path, platform: str) -> None:
    """Remember that ``platform`` made the folder (once: a later platform never rewrites)."""
    if not (root / PLATFORM_FILE).exists():
        write_private(root / PLATFORM_FILE, platform + "\n")


def check_recorded(root: Path, namespace: str, chosen: str) -> None:
    """Refuse to use a namespace folder with a platform other than the one that made it."""
    recorded = recorded_platform(root)
    if recorded is not None and recorded != chosen:
        raise SkupperError(
            f'Namespace "{namespace}" is a {recorded} site, not a {chosen} one',
            f"it was created with --platform {recorded}",
            f"Use --platform {recorded} for it, or delete it there first.",
        )
