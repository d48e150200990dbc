"""Choosing the platform: --platform, else SKUPPER_PLATFORM, else what the machine has."""

from __future__ import annotations

import os

PLATFORMS = ("kubernetes", "docker", "systemd")
# The platforms this project has built so far; the rest say so and exit non-zero.
BUILT = ("systemd", "kubernetes")


def kubeconfig_present() -> bool:
    env = os.environ.get("KUBECONFIG")
    if env:
        return any(os.path.isfile(p) for p in env.split(os.pathsep) if p)
    return os.path.isfile(os.path.join(os.path.expanduser("~"), ".kube", "config"))


def in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.isfile(
        "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )


def choose_platform(flag: str | None) -> str:
    if flag:
        return flag
    env = os.environ.get("SKUPPER_PLATFORM", "").strip()
    if env:
        return env
    if kubeconfig_present() or in_cluster():
        return "kubernetes"
    return "systemd"
