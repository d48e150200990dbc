"""deploy/: the CRDs against upstream's, property by property; the Role; the manifests."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubehelp import CONTROLLER_TOKEN, DEPLOY, controller_role, manifests, role_authorizer

UPSTREAM = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "crds"
ROOT = Path(__file__).resolve().parents[2]


def _ours() -> dict[str, dict[str, Any]]:
    return {d["spec"]["names"]["kind"]: d for d in manifests()
            if d["kind"] == "CustomResourceDefinition"}


def _properties(schema: dict[str, Any], path: str = "") -> dict[str, Any]:
    """Every property path of a schema with its type (items as "[]")."""
    found: dict[str, Any] = {}
    for name, child in (schema.get("properties") or {}).items():
        here = f"{path}.{name}" if path else name
        found[here] = child.get("type")
        found.update(_properties(child, here))
    if "items" in schema:
        found[f"{path}[]"] = schema["items"].get("type")
        found.update(_properties(schema["items"], f"{path}[]"))
    if isinstance(schema.get("additionalProperties"), dict):
        found[f"{path}{{}}"] = schema["additionalProperties"].get("type")
    return found


needs_upstream = pytest.mark.skipif(not UPSTREAM.is_dir(), reason=f"no upstream CRDs at {UPSTREAM}")


@needs_upstream
def test_crds_cover_upstreams_property_by_property() -> None:
    ours = _ours()
    from skupper.resources.extensions import STATUS_EXTENSIONS
    from skupper.resources.model import KINDS

    upstream = {}
    for file in UPSTREAM.glob("*.yaml"):
        crd = yaml.safe_load(file.read_text())
        upstream[crd["spec"]["names"]["kind"]] = crd
    assert set(ours) == set(upstream) >= set(KINDS)
    for kind, theirs in upstream.items():
        mine = ours[kind]
        for key in ("group", "scope", "names"):
            assert mine["spec"][key] == theirs["spec"][key], (kind, key)
        (their_version,) = theirs["spec"]["versions"]
        (my_version,) = mine["spec"]["versions"]
        assert my_version["name"] == their_version["name"] == "v2alpha1"
        assert my_version["served"] and my_version["storage"]
        assert my_version["subresources"] == their_version["subresources"] == {"status": {}}
        assert my_version.get("additionalPrinterColumns") == their_version.get(
            "additionalPrinterColumns")
        their_props = _properties(their_version["schema"]["openAPIV3Schema"])
        my_props = _properties(my_version["schema"]["openAPIV3Schema"])
        for path, kind_of in their_props.items():
            assert my_props.get(path) == kind_of, (kind, path, kind_of, my_props.get(path))
        extra = {path for path in my_props if path not in their_props}
        allowed = set()
        for field, schema in STATUS_EXTENSIONS.get(kind, {}).items():
            allowed |= {f"status.{field}"} | {f"status.{field}{p}" if p.startswith("[") else
                                               f"status.{field}.{p}"
                                               for p in _properties(schema)}
            if "items" in schema:
                allowed |= {f"status.{field}[]"} | {
                    f"status.{field}[].{p}" for p in _properties(schema["items"])}
        assert extra <= allowed, (kind, sorted(extra - allowed))


@needs_upstream
def test_crd_file_is_what_the_generator_writes() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import make_crds
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    assert (DEPLOY / "00-crds.yaml").read_text() == make_crds.render(UPSTREAM), (
        "deploy/00-crds.yaml is stale: run .venv/bin/python scripts/make_crds.py")


def test_manifests_are_the_whole_install() -> None:
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in manifests()
                   if d["kind"] != "CustomResourceDefinition")
    assert kinds == [
        ("Deployment", "skupper-controller"),
        ("Role", "skupper-controller"),
        ("RoleBinding", "skupper-controller"),
        ("Service", "skupper-grant-server"),
        ("Service", "skupper-metrics"),
        ("Service", "skupper-router"),
        ("ServiceAccount", "skupper-controller"),
    ]
    for doc in manifests():
        assert "namespace" not in doc["metadata"], "apply -n chooses the namespace"
    (deployment,) = [d for d in manifests() if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "skupper-controller"
    (container,) = pod["containers"]
    assert container["args"] == ["system", "controller"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"inter-router": 55671, "edge": 45671, "grant-server": 9090,
                     "metrics": 9464}
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "9464"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SKUPPER_METRICS_HOST"] == "0.0.0.0"
    selector = deployment["spec"]["selector"]["matchLabels"]
    for service in (d for d in manifests() if d["kind"] == "Service"):
        assert service["spec"]["selector"] == selector
        for port in service["spec"]["ports"]:
            assert port["port"] == ports[port["targetPort"]]  # advertised == bound
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["skupper"]' in dockerfile


def test_role_is_least_privilege() -> None:
    authorize = role_authorizer(controller_role())

    def may(verb: str, group: str, resource: str, name: str | None = None) -> bool:
        return bool(authorize(CONTROLLER_TOKEN, verb, group, resource, "west", name))

    # What the controller does.
    assert may("watch", "skupper.io", "sites") and may("list", "skupper.io", "accesstokens")
    assert may("update", "skupper.io", "accessgrants/status")
    assert may("create", "skupper.io", "links")
    assert may("get", "", "secrets", "skupper-site-ca") and may("update", "", "secrets", "x")
    assert may("update", "coordination.k8s.io", "leases", "skupper-controller")
    # What it must not.
    assert not may("update", "skupper.io", "sites")  # specs belong to users
    assert not may("delete", "skupper.io", "links")
    assert not may("list", "", "secrets") and not may("delete", "", "secrets", "x")
    assert not may("update", "coordination.k8s.io", "leases", "someone-elses")
    assert not may("get", "", "pods")
    assert not authorize(CONTROLLER_TOKEN, "list", "skupper.io", "sites", None, None)
