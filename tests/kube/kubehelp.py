"""Helpers for the Kubernetes tests: plain HTTP to the double, kubeconfigs, applying deploy/."""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"

# apiVersion/kind -> (URL prefix, plural, namespaced), for applying manifests as kubectl does.
_ROUTES = {
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"):
        ("/apis/apiextensions.k8s.io/v1", "customresourcedefinitions", False),
    ("v1", "ServiceAccount"): ("/api/v1", "serviceaccounts", True),
    ("v1", "Service"): ("/api/v1", "services", True),
    ("v1", "Secret"): ("/api/v1", "secrets", True),
    ("apps/v1", "Deployment"): ("/apis/apps/v1", "deployments", True),
    ("rbac.authorization.k8s.io/v1", "Role"):
        ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"):
        ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
}


def request(url: str, method: str, path: str, body: Any = None, *,
            content_type: str = "application/json",
            token: str | None = None) -> tuple[int, Any]:
    """One plain HTTP request to the double (no Kubernetes client involved)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    headers = {"Content-Type": content_type}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body),
                     headers=headers)
        response = conn.getresponse()
        text = response.read().decode()
        return response.status, json.loads(text) if text.strip() else None
    finally:
        conn.close()


def manifests(folder: Path = DEPLOY) -> list[dict[str, Any]]:
    """Every document that ``kubectl apply -f deploy/`` applies (*.yaml, *.yml, *.json)."""
    docs: list[dict[str, Any]] = []
    for file in sorted(folder.iterdir()):
        if file.suffix in (".yaml", ".yml", ".json"):
            docs += [d for d in yaml.safe_load_all(file.read_text()) if d]
    return docs


def kubectl_apply(url: str, namespace: str, docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        prefix, plural, namespaced = _ROUTES[(doc["apiVersion"], doc["kind"])]
        path = f"{prefix}/namespaces/{namespace}/{plural}" if namespaced else f"{prefix}/{plural}"
        status, answer = request(url, "POST", path, doc)
        if status == 409:
            continue  # already there (the CRDs, applied for an earlier namespace)
        assert status == 201, (doc["kind"], doc["metadata"]["name"], status, answer)


def create_namespace(double: Any, name: str) -> None:
    double.call(lambda: double.api.create_namespace(name))


def write_kubeconfig(path: Path, server: str, namespace: str = "default", *,
                     token: str | None = None, context: str = "double",
                     ca_pem: bytes | None = None) -> Path:
    cluster: dict[str, Any] = {"server": server}
    if ca_pem is not None:
        import base64

        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    config = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "double", "cluster": cluster}],
        "users": [{"name": "tester", "user": {"token": token} if token else {}}],
        "contexts": [{"name": context,
                      "context": {"cluster": "double", "user": "tester", "namespace": namespace}}],
        "current-context": context,
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def redeem_post(token: dict[str, Any], *, name: str, subject: str) -> tuple[int, str]:
    """One redemption as upstream's redeemer sends it (stdlib only); (status, body)."""
    import ssl

    spec = token["spec"]
    url = urlsplit(spec["url"])
    context = ssl.create_default_context(cadata=spec["ca"])
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    conn = http.client.HTTPSConnection(url.hostname or "", url.port, context=context,
                                       timeout=10)
    try:
        conn.request("POST", url.path, body=spec["code"].encode(),
                     headers={"name": name, "subject": subject})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


CONTROLLER_TOKEN = "skupper-controller-serviceaccount"


def role_authorizer(role: dict[str, Any]) -> Any:
    """RBAC for the controller's token: exactly the Role in deploy/; anyone else: admin."""

    def authorize(token: str | None, verb: str, group: str, resource: str,
                  namespace: str | None, name: str | None) -> bool:
        if token != CONTROLLER_TOKEN:
            return True
        if namespace is None:
            return False  # a Role grants nothing cluster-wide
        for rule in role["rules"]:
            if group not in rule.get("apiGroups", []) or resource not in rule.get(
                    "resources", []) or verb not in rule.get("verbs", []):
                continue
            names = rule.get("resourceNames")
            if not names or (name in names and verb not in ("list", "watch", "create")):
                return True
        return False

    return authorize


def controller_role() -> dict[str, Any]:
    (role,) = [d for d in manifests() if d["kind"] == "Role"]
    return role
