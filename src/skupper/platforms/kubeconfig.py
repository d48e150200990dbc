"""Which kubeconfig, context and namespace a command means; no Kubernetes client here.

kubectl's order: ``--kubeconfig``, else the first existing file of ``KUBECONFIG``, else
``~/.kube/config``; with none of them, the in-cluster service account. (Merging several
``KUBECONFIG`` files, as kubectl does, is not supported: the first existing one is used.)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from skupper.base.errors import SkupperError

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def kubeconfig_path(flag: str | None) -> Path | None:
    if flag:
        path = Path(flag).expanduser()
        if not path.is_file():
            raise SkupperError(f"No kubeconfig at {flag}", "the file does not exist",
                               "Check --kubeconfig.")
        return path
    env = os.environ.get("KUBECONFIG")
    if env:
        for item in env.split(os.pathsep):
            if item and Path(item).expanduser().is_file():
                return Path(item).expanduser()
    default = Path.home() / ".kube" / "config"
    return default if default.is_file() else None


def in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and (SERVICE_ACCOUNT / "token").is_file()


def _load(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SkupperError(f"Cannot read the kubeconfig {path}", str(exc)) from None
    if not isinstance(data, dict):
        raise SkupperError(f"Cannot read the kubeconfig {path}", "it is not a YAML mapping")
    return data


def context_namespace(flag: str | None, context: str | None) -> str:
    """The namespace of the chosen context (what kubectl uses without -n); else default."""
    path = kubeconfig_path(flag)
    if path is None:
        if in_cluster():
            return (SERVICE_ACCOUNT / "namespace").read_text().strip() or "default"
        return "default"
    data = _load(path)
    name = context or data.get("current-context")
    for entry in data.get("contexts") or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            return str((entry.get("context") or {}).get("namespace") or "default")
    if context:
        raise no_context(context, path)
    return "default"


def no_context(context: str, path: Path | str) -> SkupperError:
    return SkupperError(f'No context "{context}" in the kubeconfig {path}',
                        "the context is not defined there",
                        'List contexts with "kubectl config get-contexts".')
